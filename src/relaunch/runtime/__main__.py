"""``relaunch-runtime -- COMMAND…`` and ``python -m relaunch.runtime -- COMMAND…``."""

from __future__ import annotations

import sys

from relaunch.runtime.wrapper import main

if __name__ == "__main__":
    sys.exit(main())
