"""Pydantic models of the SyncConnection / SyncRun custom resources: the single source of truth."""
