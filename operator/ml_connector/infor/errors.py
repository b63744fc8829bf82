"""Typed errors of the Infor client. Every message names what is wrong and where, and never a secret.

All messages pass through :func:`ml_connector.net.redact.redact`, so a credential value that slipped
into a server's error text is masked before it reaches a log, an exception or a status field.
"""

from __future__ import annotations

from collections.abc import Iterable

from ml_connector.net.redact import redact


class InforError(Exception):
    """Base of every error raised by :mod:`ml_connector.infor`."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self.args[0])


class IonApiFileError(InforError):
    """The ``.ionapi`` credentials file is unreadable, malformed or incomplete.

    ``key`` names the offending key (``None`` when the file as a whole is bad: unreadable, not JSON,
    not an object). The message never contains a value read from the file.
    """

    def __init__(self, source: str, problem: str, *, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = f"{source}: key {key!r}" if key else source
        super().__init__(f"invalid .ionapi credentials file {where}: {problem}")


class AuthenticationError(InforError):
    """The token endpoint refused the credentials, or the gateway kept answering 401 after a re-authentication."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        self.error = error
        self.status = status
        super().__init__(message)


class GatewayError(InforError):
    """The ION API Gateway (or the backend behind it) answered with an unexpected HTTP status.

    Raised after the retry policy gave up (429/5xx) or at once for statuses that are never retried
    (404 wrong route, 405 wrong verb, ...).
    """

    def __init__(self, method: str, url: str, status: int | None, detail: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.detail = detail
        outcome = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {url} -> {outcome}: {detail}")


class ProtocolError(InforError):
    """The server answered 200 with a body this client cannot interpret (not JSON, wrong shape)."""


class M3Error(InforError):
    """An M3 MI transaction failed (``ServerReturnedNOK`` and friends)."""

    def __init__(
        self,
        program: str,
        transaction: str,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        error_type: str | None = None,
    ) -> None:
        self.program = program
        self.transaction = transaction
        self.error_message = message
        self.code = code
        self.field = field
        self.error_type = error_type
        extras = ", ".join(
            f"{name} {value}" for name, value in (("code", code), ("field", field), ("type", error_type)) if value
        )
        suffix = f" ({extras})" if extras else ""
        super().__init__(f"M3 {program}/{transaction} failed: {message}{suffix}")


class MongooseError(InforError):
    """A SyteLine / CSI Mongoose IDO request answered ``Success: false``."""

    def __init__(self, operation: str, ido: str, config: str | None, message: str) -> None:
        self.operation = operation
        self.ido = ido
        self.config = config
        self.error_message = message
        where = f" (config {config})" if config else ""
        super().__init__(f"Mongoose {operation} {ido}{where} failed: {message}")


class ExtractionError(InforError):
    """A read could not make progress (e.g. an EXPORTMI cursor that does not advance)."""


class UnsupportedEntityError(InforError):
    """The product line does not provide this entity (or this operation)."""

    def __init__(self, product_line: str, entity: str, supported: Iterable[str]) -> None:
        self.product_line = product_line
        self.entity = entity
        self.supported = tuple(sorted(supported))
        listed = ", ".join(self.supported) or "none"
        super().__init__(f"{product_line} does not support {entity!r}; supported: {listed}")


class ProductLineNotSupportedError(InforError):
    """The product line is known but not implemented (LN)."""


class BudgetWriteError(InforError):
    """Budget write-back could not start (bad version, header cannot be created, ...).

    Per-line failures do not raise: they are reported in :class:`~ml_connector.infor.budgets.BudgetWriteReport`.
    """
