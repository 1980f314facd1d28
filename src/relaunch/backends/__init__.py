"""Backends: where attempts run (DESIGN.md §1). The contract is in base.py."""
