"""The audit trail: every record's journey, runs, watermarks; SQLite embedded, PostgreSQL in production.

``open_store(url)`` picks the backend from the URL: ``postgresql://…`` / ``postgres://…`` for PostgreSQL,
``sqlite:///path/to/audit.db`` or a plain file path for SQLite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml_connector.audit.store import (
    AuditError,
    AuditSchemaError,
    AuditStore,
    AuditUnavailableError,
    EventStatus,
    FlowCounts,
    LoadedHash,
    OutagePolicy,
    RecordEvent,
    RunInfo,
    RunStatus,
    StoredEvent,
    Watermark,
)

__all__ = [
    "AuditError",
    "AuditSchemaError",
    "AuditStore",
    "AuditUnavailableError",
    "EventStatus",
    "FlowCounts",
    "LoadedHash",
    "OutagePolicy",
    "RecordEvent",
    "RunInfo",
    "RunStatus",
    "StoredEvent",
    "Watermark",
    "create_store",
]


def create_store(url: str | Path, **options: Any) -> AuditStore:
    """An (unopened) audit store for ``url``; ``options`` go to the backend (``policy=``, timeouts...)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")) or (" " not in text and text.startswith("host=")):
        from ml_connector.audit.postgres import PostgresAuditStore

        return PostgresAuditStore(text, **options)
    from ml_connector.audit.sqlite import SqliteAuditStore

    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif text.startswith("sqlite://"):
        raise AuditError(f"audit store URL {text!r}: use sqlite:///relative/path or sqlite:////absolute/path")
    if not text:
        raise AuditError("audit store URL is empty")
    return SqliteAuditStore(text, **options)
