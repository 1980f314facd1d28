"""Builders turn one planned image into an image in a registry (or the local engine).

The one registry of builders is :data:`relaunch.images.builders.base.BUILDERS`.
"""
