"""Vertex AI custom training: one CustomJob per attempt (see ``backend.py``)."""
