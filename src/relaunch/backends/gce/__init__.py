"""Compute Engine spot VMs on Container-Optimized OS: one VM per attempt (see ``backend.py``)."""
