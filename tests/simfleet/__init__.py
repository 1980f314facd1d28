"""Simulated attempts for tests and benchmarks at scale: a backend whose attempts are
files (``backend.py``), one process acting as every attempt's runtime through the real
store API and fencing code (``simulator.py``), `relaunch agent` with that backend
registered (``agent.py``), and a small Cloud Storage client (``rawgcs.py``)."""
