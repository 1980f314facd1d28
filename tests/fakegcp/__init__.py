"""A fake Google Cloud for tests: one local HTTP server for the REST routes relaunch uses.

See README.md. The product reaches it only through configurable endpoints.
"""
