"""relaunch: source to a self-healing training job on spot capacity."""

__version__ = "0.1.0"
