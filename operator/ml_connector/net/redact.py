"""Keep secrets out of logs, exceptions and audit payloads.

Every credential value read by a client is registered here; :func:`redact` and the
:class:`SecretRegistry` logging filter mask registered values wherever they appear.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

MASK = "***"

_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


class SecretRegistry(logging.Filter):
    """A process-wide set of secret values, usable as a :class:`logging.Filter`."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LENGTH:
                    self._values.add(value)

    def values(self) -> Iterable[str]:
        with self._lock:
            return sorted(self._values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self.values():
            if value in text:
                text = text.replace(value, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


SECRETS = SecretRegistry()


def redact(text: str) -> str:
    """Mask every registered secret in ``text``."""
    return SECRETS.redact(text)


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach the registry to every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if SECRETS not in handler.filters:
            handler.addFilter(SECRETS)
