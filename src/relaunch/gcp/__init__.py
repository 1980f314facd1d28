"""Google Cloud plumbing: endpoints, lazy client factories, error classification.

Nothing here imports a google-cloud library at module import time.
"""
