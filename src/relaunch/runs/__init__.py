"""Runs in the store: records, attempts, leases, queue, events (DESIGN.md §2)."""
