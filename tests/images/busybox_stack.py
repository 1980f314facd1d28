"""The seeds' four-image stack as tiny images a real engine builds with nothing pulled:
each base is FROM scratch with busybox from Debian's busybox-static.

- ``arr-pytorch-base``: busybox, a version file (``.image-manifest``);
- ``arr-ml-stack``: ``ARG BASE_IMAGE`` without default, ``FROM ${BASE_IMAGE}``; its
  ``.image-manifest`` names the parent's Dockerfile, the seeds' way;
- ``arr-trainer``: declared in relaunch.toml (for its build secret), ``COPY . /app`` of a
  context its inputs and ``Dockerfile.dockerignore`` select; a ``RUN`` that uses the
  secret ``hf_token``;
- ``arr-vertex-launcher``: FROM scratch, no manifest (its dockerignore selects its folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .conftest import write

BUSYBOX = Path("/bin/busybox")

TRAINER_TOML = """\
[images.arr-trainer]
dockerfile = "Stack/arr-trainer/Dockerfile"
parent = "arr-ml-stack"
inputs = ["Stack/arr-trainer/Dockerfile", "Stack/arr-trainer/pyproject.toml", "ARR_COC/**/*.py"]
secrets = { hf_token = "env:HF_TOKEN" }
"""

FILES = {
    "Stack/arr-pytorch-base/Dockerfile": """\
        FROM scratch
        COPY Stack/arr-pytorch-base/busybox /bin/busybox
        RUN ["/bin/busybox", "--install", "-s", "/bin"]
        COPY Stack/arr-pytorch-base/version /etc/torch-version
        """,
    "Stack/arr-pytorch-base/version": "torch 2.4\n",
    "Stack/arr-pytorch-base/.image-manifest": """\
        Stack/arr-pytorch-base/Dockerfile
        Stack/arr-pytorch-base/busybox
        Stack/arr-pytorch-base/version
        """,
    "Stack/arr-pytorch-base/Dockerfile.dockerignore": "*\n!Stack/arr-pytorch-base\n",
    "Stack/arr-ml-stack/Dockerfile": """\
        ARG BASE_IMAGE
        FROM ${BASE_IMAGE}
        COPY Stack/arr-ml-stack/requirements.txt /opt/requirements.txt
        RUN cat /etc/torch-version /opt/requirements.txt > /etc/ml-stack
        """,
    "Stack/arr-ml-stack/requirements.txt": "transformers==4.44\n",
    "Stack/arr-ml-stack/.image-manifest": """\
        # files that trigger a rebuild
        Stack/arr-ml-stack/Dockerfile
        Stack/arr-ml-stack/requirements.txt
        Stack/arr-pytorch-base/Dockerfile
        """,
    "Stack/arr-ml-stack/Dockerfile.dockerignore": "*\n!Stack/arr-ml-stack\n",
    "Stack/arr-trainer/Dockerfile": """\
        ARG BASE_IMAGE
        FROM ${BASE_IMAGE}
        COPY . /app
        RUN --mount=type=secret,id=hf_token sha256sum /run/secrets/hf_token \\
            | cut -d " " -f 1 > /etc/hf_token.sha256
        """,
    "Stack/arr-trainer/pyproject.toml": "[project]\nname = 'arr'\n",
    "Stack/arr-trainer/Dockerfile.dockerignore": """\
        *
        !ARR_COC
        !Stack/arr-trainer/pyproject.toml
        ARR_COC/experimental
        """,
    "Stack/arr-vertex-launcher/Dockerfile": """\
        FROM scratch
        COPY Stack/arr-vertex-launcher/busybox /bin/busybox
        RUN ["/bin/busybox", "--install", "-s", "/bin"]
        COPY Stack/arr-vertex-launcher/entrypoint-wrapper.sh /opt/launcher/
        """,
    "Stack/arr-vertex-launcher/Dockerfile.dockerignore": "*\n!Stack/arr-vertex-launcher\n",
    "Stack/arr-vertex-launcher/entrypoint-wrapper.sh": '#!/bin/sh\nexec "$@"\n',
    "ARR_COC/__init__.py": "",
    "ARR_COC/model.py": "class Model: ...\n",
    "ARR_COC/Training/train.py": "print('train')\n",
    "ARR_COC/README.md": "not an input of any image\n",
    "ARR_COC/experimental/draft.py": "an input the trainer's dockerignore keeps out\n",
    "CLI/cli.py": "print('cli')\n",
}


def make_busybox_stack(root: Path, repository: str) -> Path:
    for rel, text in FILES.items():
        write(root, rel, text)
    for name in ("arr-pytorch-base", "arr-vertex-launcher"):
        shutil.copy2(BUSYBOX, root / "Stack" / name / "busybox")
    os.chmod(root / "Stack/arr-vertex-launcher/entrypoint-wrapper.sh", 0o755)
    write(
        root,
        "relaunch.toml",
        f'[image_stack]\ndiscover = "Stack"\nrepository = "{repository}"\n\n' + TRAINER_TOML,
    )
    return root
