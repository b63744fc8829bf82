"""The two kinds of failure a sync run reports, and the one place that tells them apart.

* :class:`SyncConfigError` — the user's to fix (bad credentials, an unknown import name, a malformed
  ``.ionapi``, unmapped members under the ``Stop`` policy, an export with other columns): retrying cannot
  help. The CLI exits with :data:`CONFIG_ERROR_EXIT_CODE` and the Job's ``podFailurePolicy`` fails at once.
* everything else is transient (HTTP 5xx and 429 after the retries, the audit database away): it
  bubbles as raised, and a retry may succeed.

Messages say what is wrong and where; they pass through :func:`~ml_connector.net.redact.redact`, so a
credential never reaches a log, an exception or a status field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_connector.anaplan import errors as anaplan_errors
from ml_connector.infor import errors as infor_errors
from ml_connector.net.redact import redact

if TYPE_CHECKING:
    from ml_connector.sync.result import RunResult

#: The exit code of a run that failed for a configuration reason (same as the worker's, kube/jobs.py).
CONFIG_ERROR_EXIT_CODE = 2


class SyncError(Exception):
    """Base of the pipeline's own errors; ``result`` holds what the run got done before it stopped."""

    def __init__(self, message: str, *, result: RunResult | None = None) -> None:
        super().__init__(redact(message))
        self.result = result

    @property
    def message(self) -> str:
        return str(self.args[0])


class SyncConfigError(SyncError):
    """A problem the user has to fix; never retried."""


class SyncRunError(SyncError):
    """The run could not finish for a reason that may pass (a failure dump that could not be read...)."""


_ANAPLAN_CONFIG = (
    anaplan_errors.AuthenticationError,
    anaplan_errors.AccessDeniedError,
    anaplan_errors.NotFoundError,
    anaplan_errors.InvalidRequestError,
    anaplan_errors.UploadError,
)
_INFOR_CONFIG = (
    infor_errors.AuthenticationError,
    infor_errors.IonApiFileError,
    infor_errors.UnsupportedEntityError,
    infor_errors.ProductLineNotSupportedError,
    infor_errors.BudgetWriteError,
)


def as_config_error(exc: BaseException, where: str) -> SyncConfigError | None:
    """``exc`` as a :class:`SyncConfigError` when it is the user's to fix (``where``: what the run was doing)."""
    if isinstance(exc, SyncConfigError):
        return exc
    if isinstance(exc, anaplan_errors.UploadError) and (exc.status is None or exc.status >= 500):
        return None  # an upload that broke off is transient
    if isinstance(exc, _ANAPLAN_CONFIG):
        return SyncConfigError(f"Anaplan, while {where}: {exc}")
    if isinstance(exc, _INFOR_CONFIG):
        return SyncConfigError(f"Infor, while {where}: {exc}")
    if isinstance(exc, infor_errors.GatewayError) and exc.status in (400, 403, 404, 405):
        return SyncConfigError(f"Infor, while {where}: {exc}")
    return None
