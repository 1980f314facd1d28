"""A launcher that does not forward signals: it dies on SIGTERM and leaves its child
running (what `accelerate launch` did with one process)."""

from __future__ import annotations

import subprocess
import sys

sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))
