"""The seeds' four-image stack as tiny images a real engine builds with nothing pulled
(``examples/seeds-stack``): each base is FROM scratch with busybox from Debian's
busybox-static.

- ``arr-pytorch-base``: busybox, a version file (``.image-manifest``);
- ``arr-ml-stack``: ``ARG BASE_IMAGE`` without default, ``FROM ${BASE_IMAGE}``; its
  ``.image-manifest`` names the parent's Dockerfile, the seeds' way;
- ``arr-trainer``: declared in relaunch.toml (for its build secret), ``COPY . /app`` of a
  context its inputs and ``Dockerfile.dockerignore`` select; a ``RUN`` that uses the
  secret ``hf_token``;
- ``arr-vertex-launcher``: FROM scratch, busybox and a script (``.image-manifest``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seeds-stack"


def make_busybox_stack(root: Path, repository: str) -> Path:
    """A copy of ``examples/seeds-stack`` at ``root``, with busybox copied in, pushing to
    ``repository``."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".relaunch", "busybox"))
    for name in ("arr-pytorch-base", "arr-vertex-launcher"):
        shutil.copy2(BUSYBOX, root / "Stack" / name / "busybox")
    toml = root / "relaunch.toml"
    lines = toml.read_text().splitlines(keepends=True)
    toml.write_text(
        "".join(
            f'repository = "{repository}"\n' if line.startswith("repository =") else line
            for line in lines
        )
    )
    return root
