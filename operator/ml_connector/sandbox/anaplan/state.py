"""In-memory state of the Anaplan emulator: users, workspaces, models and everything inside a model.

Plain classes, no I/O. Lists keep their members in slotted objects indexed by id, code and name, so
a list of a million transactions stays affordable; module cells are one dict per line item keyed by
the tuple of member ids (in the module's dimension order). File content is kept per user as the
uploaded chunk bytes, never as rows.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_connector.sandbox.anaplan import ids

ListKind = Literal["list", "time", "version"]
PropertyFormat = Literal["TEXT", "NUMBER", "BOOLEAN", "DATE", "LIST"]
LineItemFormat = Literal["NUMBER", "BOOLEAN", "TEXT"]
CellValue = float | bool | str

MB = 1024 * 1024


@dataclass
class EmulatorConfig:
    """Knobs a test (or ``ml-connector sandbox``) can turn; most can also be set at run time."""

    token_lifetime: float = 35 * 60.0
    oauth_access_lifetime: float = 2100.0
    oauth_refresh_rotating: bool = True
    device_auto_approve: bool = False
    device_code_lifetime: float = 900.0
    #: accepted clock skew for the timestamp of certificate auth ``encodedDataFormat: v2``
    cert_skew: float = 300.0
    #: minimum wall time of every task, spent IN_PROGRESS with rising progress (cancellable)
    task_duration: float = 0.0
    #: extra delay of ``POST …/files/{id}/complete``
    complete_delay: float = 0.0
    chunk_limit: int = 50 * MB
    max_chunks: int = 1000
    dump_chunk_size: int = 10 * MB
    export_chunk_size: int = 10 * MB
    page_size: int = 5000
    list_items_per_call: int = 100_000
    cells_per_call: int = 100_000
    view_cell_limit: int = 1_000_000
    #: status returned by transactional calls while the model runs a task (the reference's "model busy")
    busy_status: int = 409
    schema_base: str = "https://api.anaplan.com/2/0"
    clock: Callable[[], float] = time.time

    def now(self) -> float:
        return self.clock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


@dataclass
class User:
    id: str
    email: str
    password: str
    first_name: str = "Integration"
    last_name: str = "User"
    customer_id: str = field(default_factory=ids.lower_hex)
    #: PEM certificates registered for CA certificate authentication
    certificates: list[bytes] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "active": True,
            "email": self.email,
            "emailOptIn": False,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "lastLoginDate": "2026-01-05T08:00:00.000+0000",
            "customerId": self.customer_id,
        }


@dataclass
class Workspace:
    id: str
    name: str
    size_allowance: int = 10 * 1024 * MB
    current_size: int = 120 * MB

    def to_json(self, tenant_details: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "active": True}
        if tenant_details:
            out |= {"sizeAllowance": self.size_allowance, "currentSize": self.current_size}
        return out


class Member:
    """One list item. ``props`` is aligned with the list's ``properties``."""

    __slots__ = ("code", "id", "name", "parent", "props")

    def __init__(self, id_: int, name: str, code: str, parent: int | None, props: list[Any]) -> None:
        self.id = id_
        self.name = name
        self.code = code
        self.parent = parent
        self.props = props


@dataclass
class PropertyDef:
    name: str
    format: PropertyFormat = "TEXT"
    #: for LIST-formatted properties: the name of the list whose members are referenced
    list_name: str | None = None


class FormatError(ValueError):
    """A value that does not fit a format; the message uses Anaplan's wording."""


def format_number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def parse_number(text: str) -> float:
    cleaned = text.strip().replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        raise FormatError(f"Invalid number: {text}") from None
    if not math.isfinite(value):
        raise FormatError(f"Invalid number: {text}")
    return value


_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f", ""}


def parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise FormatError(f"Invalid boolean: {text}")


class ListDef:
    """A list (or the Time / Versions dimension): members with ids, names, codes and properties."""

    def __init__(
        self,
        id_: int,
        name: str,
        *,
        item_base: int,
        kind: ListKind = "list",
        properties: list[PropertyDef] | None = None,
        numbered: bool = False,
        parent_list: ListDef | None = None,
        code: str = "",
    ) -> None:
        self.id = id_
        self.name = name
        self.kind: ListKind = kind
        self.properties = list(properties or [])
        self.prop_index = {p.name: i for i, p in enumerate(self.properties)}
        self.numbered = numbered
        self.parent_list = parent_list
        self.code = code
        self.item_base = item_base
        self.next_index = 1
        self.members: dict[int, Member] = {}
        self.by_code: dict[str, Member] = {}
        self.by_name: dict[str, Member] = {}
        #: additional lookup keys (Time: ``2024-01``, ``Jan 2024``)
        self.aliases: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self.members)

    def find(self, value: str) -> Member | None:
        """Resolve an import/API value by code, then name, then alias (Anaplan's "name or code")."""
        key = value.strip()
        return self.by_code.get(key) or self.by_name.get(key) or self.aliases.get(key)

    def add(
        self, name: str | None, code: str = "", parent: int | None = None, props: list[Any] | None = None
    ) -> Member:
        index = self.next_index
        self.next_index += 1
        if self.numbered or not name:
            name = f"#{index}"
        member = Member(
            self.item_base + index, name, code, parent, props if props is not None else [None] * len(self.properties)
        )
        self.members[member.id] = member
        self.by_name[member.name] = member
        if code:
            self.by_code[code] = member
        return member

    def rename(self, member: Member, name: str) -> None:
        if self.by_name.get(member.name) is member:
            del self.by_name[member.name]
        member.name = name
        self.by_name[name] = member

    def recode(self, member: Member, code: str) -> None:
        if member.code and self.by_code.get(member.code) is member:
            del self.by_code[member.code]
        member.code = code
        if code:
            self.by_code[code] = member

    def remove(self, member: Member) -> None:
        self.members.pop(member.id, None)
        if self.by_name.get(member.name) is member:
            del self.by_name[member.name]
        if member.code and self.by_code.get(member.code) is member:
            del self.by_code[member.code]

    def clear(self) -> None:
        self.members.clear()
        self.by_code.clear()
        self.by_name.clear()

    def parent_name(self, member: Member) -> str | None:
        if member.parent is None or self.parent_list is None:
            return None
        parent = self.parent_list.members.get(member.parent)
        return parent.name if parent else None

    def prop_text(self, member: Member, index: int, lists: dict[str, ListDef]) -> str:
        """A property value as Anaplan stringifies it in list-item JSON and exports."""
        value = member.props[index]
        if value is None:
            return ""
        prop = self.properties[index]
        if prop.format == "NUMBER":
            return repr(float(value))
        if prop.format == "BOOLEAN":
            return "true" if value else "false"
        if prop.format == "LIST" and prop.list_name:
            target = lists.get(prop.list_name)
            ref = target.members.get(value) if target else None
            return ref.name if ref else ""
        return str(value)

    def convert_prop(self, index: int, text: str, lists: dict[str, ListDef]) -> Any:
        """Parse ``text`` for property ``index``; raises :class:`FormatError` with Anaplan-like wording."""
        return self.converter(index, lists)(text)

    def converter(self, index: int, lists: dict[str, ListDef]) -> Callable[[str], Any]:
        """A parser of property ``index`` (``""`` -> ``None``), specialised once for bulk imports."""
        prop = self.properties[index]
        if prop.format == "NUMBER":
            return lambda text: parse_number(text) if text else None
        if prop.format == "BOOLEAN":
            return lambda text: parse_boolean(text) if text else None
        if prop.format == "LIST":
            target = lists.get(prop.list_name or "")
            by_code = target.by_code if target is not None else {}
            by_name = target.by_name if target is not None else {}

            def member_id(text: str) -> int | None:
                if not text:
                    return None
                ref = by_code.get(text) or by_name.get(text) or (target.find(text) if target is not None else None)
                if ref is None:
                    raise FormatError(f"Item not located in {prop.list_name} list: {text}")
                return ref.id

            return member_id
        return lambda text: text or None

    def to_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.id), "name": self.name}
        if self.code:
            out["code"] = self.code
        return out


@dataclass
class LineItem:
    id: int
    name: str
    module_id: int
    format: LineItemFormat = "NUMBER"
    code: str = ""

    def convert(self, text: str) -> CellValue:
        if self.format == "NUMBER":
            return parse_number(text)
        if self.format == "BOOLEAN":
            return parse_boolean(text)
        return text

    def coerce(self, value: Any) -> CellValue:
        """A JSON cell-write value (string, number or boolean)."""
        if isinstance(value, bool):
            if self.format == "BOOLEAN":
                return value
            if self.format == "TEXT":
                return "true" if value else "false"
            raise FormatError(f"Invalid number: {value}")
        if isinstance(value, int | float):
            if self.format == "NUMBER":
                return float(value)
            if self.format == "TEXT":
                return format_number(float(value))
            raise FormatError(f"Invalid boolean: {value}")
        if isinstance(value, str):
            return self.convert(value)
        raise FormatError(f"Invalid value: {value!r}")

    @staticmethod
    def text(value: CellValue) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return format_number(value)
        return value


@dataclass
class Module:
    id: int
    name: str
    dimensions: list[ListDef]
    line_items: list[LineItem] = field(default_factory=list)
    code: str = ""
    #: line item id -> {tuple of member ids (dimension order): value}
    cells: dict[int, dict[tuple[int, ...], CellValue]] = field(default_factory=dict)

    def line_item(self, key: str) -> LineItem | None:
        for li in self.line_items:
            if key in (li.name, str(li.id), li.code) and key:
                return li
        return None

    def dimension(self, key: str) -> ListDef | None:
        for dim in self.dimensions:
            if key in (dim.name, str(dim.id)):
                return dim
        return None


@dataclass
class FileDef:
    id: int
    name: str
    delimiter: str = '"'
    encoding: str = "UTF-8"
    first_data_row: int = 2
    format: str = "txt"
    header_row: int = 1
    separator: str = ","
    #: ``import`` (an import data source), ``export`` (an export's output),
    #: ``created`` (by a chunk count posted to an unknown id)
    origin: Literal["import", "export", "created"] = "import"
    chunk_count: int = 0

    def to_json(self, chunk_count: int | None = None) -> dict[str, Any]:
        count = self.chunk_count if chunk_count is None else chunk_count
        if self.origin == "export":
            return {"id": str(self.id), "name": self.name, "chunkCount": count, "firstDataRow": 0, "headerRow": 0}
        return {
            "id": str(self.id),
            "name": self.name,
            "chunkCount": count,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "firstDataRow": self.first_data_row,
            "format": self.format,
            "headerRow": self.header_row,
            "separator": self.separator,
        }


class FileContent:
    """One user's private copy of a file: the chunks as uploaded (decompressed), in order of their index."""

    def __init__(self, chunk_count: int = -1) -> None:
        self.declared = chunk_count
        self.chunks: dict[int, bytes] = {}
        self.completed = chunk_count >= 0

    @property
    def chunk_count(self) -> int:
        if self.declared >= 0:
            return self.declared
        return len(self.chunks)

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks.values())

    def has_content(self) -> bool:
        return bool(self.chunks)

    def missing(self) -> list[int]:
        if self.declared < 0:
            top = max(self.chunks, default=-1) + 1
            return [i for i in range(top) if i not in self.chunks]
        return [i for i in range(self.declared) if i not in self.chunks]

    def iter_chunks(self) -> Iterator[bytes]:
        for index in sorted(self.chunks):
            yield self.chunks[index]

    def data(self) -> bytes:
        return b"".join(self.iter_chunks())


#: import column targets: ``name``, ``code``, ``parent``, ``property:<name>`` (list imports);
#: ``dimension:<dimension name>``, ``lineitem:<line item name>`` (module imports)
ColumnTarget = str


@dataclass
class ImportDef:
    id: int
    name: str
    file_id: int | None
    import_type: Literal["HIERARCHY_DATA", "MODULE_DATA"]
    target_id: int
    header_names: list[str]
    mapping: dict[str, ColumnTarget]
    #: module dimensions not taken from a column: dimension name -> member name, or ``None`` = prompted
    #: through ``mappingParameters`` when the task is started
    fixed: dict[str, str | None] = field(default_factory=dict)
    code: str = ""


@dataclass
class ExportColumn:
    header: str
    #: ``dimension:<name>`` (member code, or name when the member has none), ``dimension-name:<name>``,
    #: ``lineitem:<name>``
    source: str


@dataclass
class ExportDef:
    id: int
    name: str
    module_id: int
    columns: list[ExportColumn]
    export_type: str = "TABULAR_MULTI_COLUMN"
    export_format: str = "text/csv"
    encoding: str = "UTF-8"
    #: only the cells where this BOOLEAN line item is true
    filter_line_item: str | None = None
    code: str = ""


@dataclass
class ProcessDef:
    id: int
    name: str
    action_ids: list[int]
    code: str = ""


@dataclass
class ActionDef:
    """An "other action": ``DELETE_BY_SELECTION`` removes every member of ``list_id``."""

    id: int
    name: str
    list_id: int
    action_type: str = "DELETE_BY_SELECTION"
    code: str = ""


TaskState = Literal["NOT_STARTED", "IN_PROGRESS", "COMPLETE", "CANCELLING", "CANCELLED"]


@dataclass
class Task:
    id: str
    action_id: int
    kind: str
    user_id: str
    creation_time: int
    locale: str = "en_US"
    mapping_parameters: list[dict[str, Any]] = field(default_factory=list)
    state: TaskState = "NOT_STARTED"
    progress: float = 0.0
    current_step: str = "Waiting to start."
    result: dict[str, Any] | None = None
    start_time: int | None = None
    cancelled_by: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def summary(self) -> dict[str, Any]:
        return {"taskId": self.id, "taskState": self.state, "creationTime": self.creation_time}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "taskInformation",
            "taskId": self.id,
            "currentStep": self.current_step,
            "progress": self.progress,
            "taskState": self.state,
            "creationTime": self.creation_time,
        }
        if self.cancelled_by:
            out["cancelledBy"] = self.cancelled_by
        if self.result is not None:
            out["result"] = self.result
        return out


@dataclass
class ModelState:
    id: str
    name: str
    workspace: Workspace
    #: users who can see the model
    users: set[str] = field(default_factory=set)
    active_state: str = "UNLOCKED"
    lists: dict[int, ListDef] = field(default_factory=dict)
    time: ListDef | None = None
    versions: ListDef | None = None
    modules: dict[int, Module] = field(default_factory=dict)
    imports: dict[int, ImportDef] = field(default_factory=dict)
    exports: dict[int, ExportDef] = field(default_factory=dict)
    processes: dict[int, ProcessDef] = field(default_factory=dict)
    actions: dict[int, ActionDef] = field(default_factory=dict)
    files: dict[int, FileDef] = field(default_factory=dict)
    #: (user id, file id) -> that user's content
    contents: dict[tuple[str, int], FileContent] = field(default_factory=dict)
    #: action id -> task id -> task
    tasks: dict[int, dict[str, Task]] = field(default_factory=dict)
    #: (task id, object id) -> dump bytes; object id is the import for nested process dumps, else ""
    dumps: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: (user id, import id) -> task id whose dump is current (a new run replaces the old dump)
    latest_dump: dict[tuple[str, int], str] = field(default_factory=dict)
    running: Task | None = None
    iso_creation_date: str = "2025-11-02T09:14:00.000+0000"
    last_modified: str = "2026-01-05T08:00:00.000+0000"
    last_saved_serial_number: int = 2_000_123
    last_modified_by: str = ""
    _counters: dict[int, int] = field(default_factory=dict)

    def next_id(self, prefix: int) -> int:
        value = self._counters.get(prefix, 0)
        self._counters[prefix] = value + 1
        return ids.object_id(prefix, value)

    @property
    def busy(self) -> bool:
        return self.running is not None

    def dimensions(self) -> list[ListDef]:
        out = list(self.lists.values())
        if self.time is not None:
            out.append(self.time)
        if self.versions is not None:
            out.append(self.versions)
        return out

    def lists_by_name(self) -> dict[str, ListDef]:
        return {d.name: d for d in self.dimensions()}

    def list_by_key(self, key: str) -> ListDef | None:
        for lst in self.lists.values():
            if key in (str(lst.id), lst.name):
                return lst
        return None

    def dimension_by_key(self, key: str) -> ListDef | None:
        for dim in self.dimensions():
            if key in (str(dim.id), dim.name) or (dim.kind == "version" and key in ("Version", "Versions")):
                return dim
        return None

    def module_by_key(self, key: str) -> Module | None:
        for mod in self.modules.values():
            if key in (str(mod.id), mod.name):
                return mod
        return None

    def line_items(self) -> Iterator[LineItem]:
        for mod in self.modules.values():
            yield from mod.line_items

    def action_name(self, action_id: int) -> str:
        for registry in (self.imports, self.exports, self.processes, self.actions):
            obj = registry.get(action_id)
            if obj is not None:
                return obj.name
        return ""

    def content(self, user_id: str, file_id: int) -> FileContent | None:
        return self.contents.get((user_id, file_id))

    def to_json(self, details: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "activeState": self.active_state,
            "currentWorkspaceId": self.workspace.id,
            "currentWorkspaceName": self.workspace.name,
            "modelUrl": f"https://us1a.app.anaplan.com/anaplan/framework.jsp?selectedWorkspaceId={self.workspace.id}&takeAction=modelDrillDown&selectedModelId={self.id}",
            "categoryValues": [],
        }
        if details:
            out |= {
                "memoryUsage": 64 * MB + 200 * sum(len(d) for d in self.lists.values()),
                "isoCreationDate": self.iso_creation_date,
                "lastModified": self.last_modified,
                "lastModifiedByUserGuid": self.last_modified_by,
                "lastSavedSerialNumber": self.last_saved_serial_number,
            }
        return out


@dataclass
class AnaplanState:
    """Everything the emulator holds. Build it with :class:`~ml_connector.sandbox.anaplan.builder.ModelBuilder`."""

    config: EmulatorConfig = field(default_factory=EmulatorConfig)
    users: dict[str, User] = field(default_factory=dict)
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    models: dict[str, ModelState] = field(default_factory=dict)

    def user_by_email(self, email: str) -> User | None:
        for user in self.users.values():
            if user.email.lower() == email.lower():
                return user
        return None

    def add_user(self, email: str, password: str, **fields: Any) -> User:
        user = User(id=ids.lower_hex(), email=email, password=password, **fields)
        self.users[user.id] = user
        return user

    def add_workspace(self, name: str) -> Workspace:
        ws = Workspace(id=ids.lower_hex(), name=name)
        self.workspaces[ws.id] = ws
        return ws

    def visible_models(self, user: User) -> list[ModelState]:
        return [m for m in self.models.values() if user.id in m.users]

    def visible_workspaces(self, user: User) -> list[Workspace]:
        seen: dict[str, Workspace] = {}
        for model in self.visible_models(user):
            seen.setdefault(model.workspace.id, model.workspace)
        return list(seen.values())
