"""Pydantic models of the Anaplan wire objects (camelCase on the wire, snake_case in Python).

Unknown fields are ignored (Anaplan adds fields, e.g. ``tokenInfo.refreshToken``); empty collections
that Anaplan omits default to empty. Ids are always strings.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


# --------------------------------------------------------------------------- envelope


class Paging(Wire):
    current_page_size: int = 0
    offset: int = 0
    total_size: int = 0
    next: str | None = None
    previous: str | None = None


# --------------------------------------------------------------------------- auth


class TokenInfo(Wire):
    """``tokenInfo`` of ``/token/authenticate`` and ``/token/refresh``; ``expires_at`` is epoch milliseconds."""

    token_id: str | None = None
    token_value: SecretStr
    expires_at: int
    refresh_token_id: str | None = None


class DeviceAuthorization(BaseModel):
    """Answer of ``POST /oauth/device/code``: show ``verification_uri`` and ``user_code`` to the user."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    device_code: SecretStr
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    expires_in: int = 900
    interval: int = 5


class OAuthTokens(BaseModel):
    """Answer of ``POST /oauth/token``. ``refresh_token`` rotates on every refresh for rotatable clients."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_in: int = 2100
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    scope: str | None = None


# --------------------------------------------------------------------------- discovery


class Workspace(Wire):
    id: str
    name: str
    active: bool = True
    size_allowance: int | None = None
    current_size: int | None = None


class ModelInfo(Wire):
    id: str
    name: str
    active_state: str | None = None
    current_workspace_id: str | None = None
    current_workspace_name: str | None = None
    model_url: str | None = None


class ModelObject(Wire):
    """Any named object of a model: list, module, import, export, process, action, file."""

    id: str
    name: str
    code: str | None = None


class ListInfo(ModelObject):
    pass


class ModuleInfo(ModelObject):
    pass


class ImportInfo(ModelObject):
    import_data_source_id: str | None = None
    import_type: str | None = None


class ExportInfo(ModelObject):
    export_type: str | None = None
    export_format: str | None = None
    encoding: str | None = None
    layout: str | None = None


class ProcessInfo(ModelObject):
    pass


class ActionInfo(ModelObject):
    action_type: str | None = None


class FileInfo(ModelObject):
    chunk_count: int = 0
    delimiter: str | None = None
    encoding: str | None = None
    first_data_row: int | None = None
    format: str | None = None
    header_row: int | None = None
    separator: str | None = None


class ChunkInfo(Wire):
    id: str
    name: str | None = None


class ModelStatus(Wire):
    """``requestStatus`` of ``GET /models/{id}/status``."""

    current_step: str | None = None
    progress: float | None = None
    task_id: str | None = None
    tooltip: str | None = None

    @property
    def busy(self) -> bool:
        return self.task_id is not None or (self.progress is not None and self.progress >= 0)


# --------------------------------------------------------------------------- tasks

NOT_STARTED: Final = "NOT_STARTED"
IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETE: Final = "COMPLETE"
CANCELLING: Final = "CANCELLING"
CANCELLED: Final = "CANCELLED"
#: There is no FAILED state: failure is COMPLETE with ``result.successful == false``. CANCELLING is not terminal.
TERMINAL_STATES: Final = frozenset({COMPLETE, CANCELLED})


class Rejection(BaseModel):
    """One row of a failure dump.

    ``row`` is Anaplan's ``_Line_``: the 1-based line number in the uploaded file, header lines included
    (so with one header line, the first data row you sent is row 2). ``values`` holds the row's
    original columns as Anaplan echoed them; ``column`` is the column the message names, when it
    names one; ``severity`` is the dump's ``_Status_`` (``E`` error, ``W`` warning).
    """

    model_config = ConfigDict(frozen=True)

    row: int
    column: str | None
    message: str
    values: dict[str, str]
    severity: str = "E"


class TaskDetail(Wire):
    type: str | None = None
    local_message_text: str | None = None
    occurrences: int | None = None
    values: list[str] = Field(default_factory=list)

    @property
    def fields(self) -> dict[str, str]:
        """``values`` is a flat ``[key, value, key, value, ...]`` list; this pairs it up."""
        return dict(zip(self.values[::2], self.values[1::2], strict=False))


class TaskResult(Wire):
    """``task.result``; nested results for processes have the same shape.

    ``rejections`` and ``dump_error`` are not on the wire: the client fills them from the failure dump
    (``dump_error`` says why a dump announced by ``failure_dump_available`` could not be read).
    """

    successful: bool
    failure_dump_available: bool = False
    object_id: str | None = None
    object_name: str | None = None
    details: list[TaskDetail] = Field(default_factory=list)
    nested_results: list[TaskResult] = Field(default_factory=list)
    rejections: list[Rejection] = Field(default_factory=list)
    dump_error: str | None = None

    def all_rejections(self) -> list[Rejection]:
        """Own rejections followed by those of every nested result, depth first."""
        found = list(self.rejections)
        for nested in self.nested_results:
            found.extend(nested.all_rejections())
        return found

    def summary(self) -> str:
        """The detail messages, or the failing nested actions, as one line."""
        texts = [d.local_message_text for d in self.details if d.local_message_text]
        for nested in self.nested_results:
            if not nested.successful:
                label = nested.object_name or nested.object_id or "nested action"
                texts.append(f"{label}: {nested.summary() or 'failed'}")
        return "; ".join(texts)


class Task(Wire):
    task_id: str
    task_state: str = NOT_STARTED
    creation_time: int | None = None
    progress: float | None = None
    current_step: str | None = None
    result: TaskResult | None = None
    cancelled_by: Any = None

    @property
    def done(self) -> bool:
        return self.task_state in TERMINAL_STATES


# --------------------------------------------------------------------------- transactional lists


class ListItem(Wire):
    id: str | None = None
    name: str
    code: str | None = None
    parent: str | None = None
    parent_id: str | None = None
    list_id: str | None = None
    list_name: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    subsets: dict[str, bool] = Field(default_factory=dict)


class ListItemFailure(Wire):
    """A per-item failure; ``request_index`` is the item's index in *your* whole input, across batches."""

    request_index: int
    failure_type: str | None = None
    failure_message_details: str | None = None


class ListWriteResult(Wire):
    """Totals over every batch of one add/update/delete call."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    ignored: int = 0
    total: int = 0
    failures: list[ListItemFailure] = Field(default_factory=list)
