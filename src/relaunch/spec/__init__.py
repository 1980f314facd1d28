"""Validated models of what users write: relaunch.toml, job.yaml (pydantic v2)."""
