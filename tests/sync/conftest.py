"""Registers the pipeline tests' fixtures (they live in ``sync_helpers``)."""

from sync_helpers import clean_env, env

__all__ = ["clean_env", "env"]
