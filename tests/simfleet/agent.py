"""`relaunch agent` with the simulated backend registered (tests and benchmarks only):

    RELAUNCH_SIM_DIR=… python -m tests.simfleet.agent agent --store URL [OPTIONS]

Everything after the module name is the `relaunch` command line.
"""

from __future__ import annotations

import sys

from relaunch.cli.main import main
from tests.simfleet.backend import register

if __name__ == "__main__":
    register()
    sys.exit(main(sys.argv[1:]))
