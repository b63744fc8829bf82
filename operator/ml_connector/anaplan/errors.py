"""One small hierarchy of Anaplan errors; each message says what went wrong, where, and what to do.

Every message passes through :func:`ml_connector.net.redact.redact`, so a credential that slipped
into a server message or a URL never reaches a log or a status field.

::

    AnaplanError
    ├── AuthenticationError     401, bad credentials, failed re-authentication
    ├── AccessDeniedError       403
    ├── NotFoundError           404, or nothing matches a name/id during discovery
    ├── InvalidRequestError     400/405/422, ambiguous names, bad arguments to the API
    ├── ModelBusyError          409: the model is locked by another task
    ├── RateLimitedError        429 after the retry budget ran out
    ├── ServerError             5xx, or the connection failed after retries
    ├── UploadError             a file upload could not be completed
    ├── TaskFailedError         a task finished COMPLETE with successful=false
    ├── TaskCancelledError      a task ended CANCELLED
    └── TaskTimeoutError        a task did not finish within the poll policy's timeout
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml_connector.net.redact import redact

if TYPE_CHECKING:
    from ml_connector.anaplan.models import Rejection, Task, TaskResult


class AnaplanError(Exception):
    """Base of every error raised by :mod:`ml_connector.anaplan`.

    ``status`` is the HTTP status when one was received; ``where`` is ``"METHOD path"`` of the
    failing call (no query string, no host); ``hint`` says what to do about it.
    """

    default_hint = "see the message; retry later if the cause looks transient"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        where: str | None = None,
        hint: str | None = None,
        server_message: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.status = status
        self.where = redact(where) if where else None
        self.hint = redact(hint if hint is not None else self.default_hint)
        self.server_message = redact(server_message) if server_message else None
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        context = []
        if self.where:
            context.append(self.where)
        if self.status is not None:
            context.append(f"HTTP {self.status}")
        if context:
            text += f" [{', '.join(context)}]"
        if self.server_message and self.server_message not in self.message:
            text += f"; Anaplan said: {self.server_message}"
        if self.hint:
            text += f". What to do: {self.hint}"
        return text


class AuthenticationError(AnaplanError):
    default_hint = (
        "check the Anaplan credentials (user and password, certificate and private key, or OAuth client id and "
        "refresh token), that the user is active, and that the auth URL matches the tenant's region"
    )


class AccessDeniedError(AnaplanError):
    default_hint = "the user lacks the role for this call; ask a workspace administrator for access"


class NotFoundError(AnaplanError):
    default_hint = (
        "check the name or id (ids are case-sensitive) and the auth/API region; a model where the user's role is "
        "NO ACCESS also answers 404, so check the user's model role"
    )


class InvalidRequestError(AnaplanError):
    default_hint = "fix the request as the server message says (check ids, action names and mapping parameters)"


class ModelBusyError(AnaplanError):
    default_hint = (
        "another task holds the model (an import, export or process run by someone else); wait for it to finish "
        "(see the model status) and retry"
    )


class RateLimitedError(AnaplanError):
    default_hint = "Anaplan kept answering 429 after all retries; lower the client rate limit or run later"


class ServerError(AnaplanError):
    default_hint = "Anaplan or the network failed after all retries; retry later, and check status.anaplan.com"


class UploadError(AnaplanError):
    default_hint = "check the file id (it must be the import's data source, 113...) and upload the whole file again"


class TaskError(AnaplanError):
    """Base of the task outcomes that are not a plain HTTP failure."""

    def __init__(self, message: str, *, task: Task | None = None, hint: str | None = None) -> None:
        self.task = task
        super().__init__(message, hint=hint)


class TaskFailedError(TaskError):
    """The task ran to ``COMPLETE`` but ``result.successful`` is false.

    ``result`` is the parsed result (nested results for processes, each with its own
    ``rejections``); ``rejections`` flattens every row-level rejection parsed from the dumps.
    """

    default_hint = (
        "fix the rejected rows listed in .rejections (row numbers are line numbers of the uploaded file) or the "
        "import definition (mapping, missing list members), then run the action again"
    )

    def __init__(self, message: str, *, task: Task, result: TaskResult, rejections: list[Rejection]) -> None:
        self.result = result
        self.rejections = rejections
        super().__init__(message, task=task)


class TaskCancelledError(TaskError):
    default_hint = "the task was cancelled (from this client or in Model Management); run the action again"


class TaskTimeoutError(TaskError):
    default_hint = "the task is still running in Anaplan; wait longer (raise the poll timeout) or cancel it"


def error_details(payload: Any) -> str | None:
    """Pull the human message out of any of Anaplan's error bodies.

    Integration API: ``{"status": {"code", "message"}}``; auth service: ``{"status": "FAILURE_...",
    "statusMessage": ...}``; OAuth: ``{"error", "error_description"}``.
    """
    if not isinstance(payload, dict):
        return None
    status = payload.get("status")
    if isinstance(status, dict):
        message = status.get("message")
        return message if isinstance(message, str) else None
    parts = [payload.get(key) for key in ("status", "statusMessage", "error", "error_description")]
    text = ": ".join(p for p in parts if isinstance(p, str) and p)
    return text or None


_BY_STATUS: dict[int, type[AnaplanError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    405: InvalidRequestError,
    409: ModelBusyError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def error_for_status(status: int, *, where: str, what: str, server_message: str | None) -> AnaplanError:
    """The typed error for an HTTP failure ``status`` while doing ``what`` (a short phrase)."""
    if status >= 500:
        cls: type[AnaplanError] = ServerError
    else:
        cls = _BY_STATUS.get(status, InvalidRequestError)
    hint: str | None = None
    if cls is AuthenticationError:
        message = f"Anaplan rejected the credentials while {what}"
    elif cls is NotFoundError:
        message = f"Anaplan found nothing while {what}"
    elif cls is ModelBusyError:
        message = f"the model is busy while {what}"
    elif cls is RateLimitedError:
        message = f"Anaplan rate limit hit while {what}"
    elif cls is ServerError:
        message = f"Anaplan server error while {what}"
    else:
        message = f"Anaplan refused the request while {what}"
        if status == 422:
            hint = "the model cannot take this call in its current state (archived or offline?); check it in Anaplan"
    return cls(message, status=status, where=where, server_message=server_message, hint=hint)
