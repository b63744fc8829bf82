"""Async client of the Anaplan Integration API v2 (bulk and transactional) and Anaplan authentication.

Public surface (everything else is an implementation detail)::

    auth     BasicAuth, CertificateAuth, OAuthAuth, request_device_code, poll_device_token
    client   AnaplanClient (discovery) -> AnaplanModel (files, tasks, list items)
    tasks    PollPolicy, MappingParameter, TaskHandle
    models   TaskResult, Rejection, Task, FileInfo, ... (pydantic wire models)
    errors   AnaplanError and its subclasses
"""

from ml_connector.anaplan.api import DEFAULT_API_URL
from ml_connector.anaplan.auth import (
    DEFAULT_AUTH_URL,
    DEFAULT_OAUTH_URL,
    AnaplanAuth,
    BasicAuth,
    CertificateAuth,
    OAuthAuth,
    poll_device_token,
    request_device_code,
)
from ml_connector.anaplan.client import AnaplanClient, AnaplanModel
from ml_connector.anaplan.errors import (
    AccessDeniedError,
    AnaplanError,
    AuthenticationError,
    InvalidRequestError,
    ModelBusyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    UploadError,
)
from ml_connector.anaplan.files import UploadResult
from ml_connector.anaplan.models import (
    DeviceAuthorization,
    ExportInfo,
    FileInfo,
    ImportInfo,
    ListInfo,
    ListItem,
    ListItemFailure,
    ListWriteResult,
    ModelInfo,
    ModelStatus,
    OAuthTokens,
    ProcessInfo,
    Rejection,
    Task,
    TaskResult,
    Workspace,
)
from ml_connector.anaplan.tasks import MappingParameter, PollPolicy, TaskHandle

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_OAUTH_URL",
    "AccessDeniedError",
    "AnaplanAuth",
    "AnaplanClient",
    "AnaplanError",
    "AnaplanModel",
    "AuthenticationError",
    "BasicAuth",
    "CertificateAuth",
    "DeviceAuthorization",
    "ExportInfo",
    "FileInfo",
    "ImportInfo",
    "InvalidRequestError",
    "ListInfo",
    "ListItem",
    "ListItemFailure",
    "ListWriteResult",
    "MappingParameter",
    "ModelBusyError",
    "ModelInfo",
    "ModelStatus",
    "NotFoundError",
    "OAuthAuth",
    "OAuthTokens",
    "PollPolicy",
    "ProcessInfo",
    "RateLimitedError",
    "Rejection",
    "ServerError",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskHandle",
    "TaskResult",
    "TaskTimeoutError",
    "UploadError",
    "UploadResult",
    "Workspace",
    "poll_device_token",
    "request_device_code",
]
