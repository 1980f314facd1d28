# An input of the trainer (ARR_COC/**/*.py) that its dockerignore keeps out.
