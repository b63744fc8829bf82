"""Deterministic, length-bounded names and our own labels for the objects the operator creates."""

from __future__ import annotations

import hashlib

__all__ = [
    "LABEL_CONNECTION",
    "LABEL_RUN",
    "MAX_NAME",
    "bounded_name",
    "child_labels",
    "label_value",
    "short_hash",
]

#: Job names end up in the ``batch.kubernetes.io/job-name`` label, whose values are at most 63 characters.
MAX_NAME = 63
LABEL_CONNECTION = "ml-connector.com/connection"
LABEL_RUN = "ml-connector.com/run"
LABEL_DIRECTION = "ml-connector.com/direction"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bounded_name(base: str, suffix: str = "", limit: int = MAX_NAME) -> str:
    """``<base>-<suffix>`` if it fits in ``limit``, else ``<base truncated>-<hash of base>-<suffix>``.

    The hash keeps two long bases that share a prefix apart; the result is a valid DNS-1123 label when
    ``base`` and ``suffix`` consist of lowercase alphanumerics, '-' and '.'.
    """
    name = f"{base}-{suffix}" if suffix else base
    if len(name) <= limit:
        return name
    tail = f"-{short_hash(base)}" + (f"-{suffix}" if suffix else "")
    if len(tail) >= limit:
        raise ValueError(f"suffix {suffix!r} leaves no room for a name within {limit} characters")
    head = base[: limit - len(tail)].rstrip("-.")
    return f"{head}{tail}"


def label_value(name: str) -> str:
    """A label value for an object name (names may be up to 253 characters; label values 63)."""
    return bounded_name(name).replace(".", "-") if len(name) > MAX_NAME else name


def child_labels(connection: str, run: str | None = None) -> dict[str, str]:
    """Our own labels for SyncRuns and Jobs; never the parent's (Argo CD tracking labels stay off children)."""
    labels = {
        "app.kubernetes.io/name": "ml-connector",
        "app.kubernetes.io/managed-by": "ml-connector",
        LABEL_CONNECTION: label_value(connection),
    }
    if run is not None:
        labels["app.kubernetes.io/component"] = "worker"
        labels[LABEL_RUN] = label_value(run)
    return labels
