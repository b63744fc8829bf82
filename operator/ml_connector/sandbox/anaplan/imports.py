"""Running an import action: stream the user's file, validate every row against the model, stage the
changes, and produce Anaplan's result and failure dump (reference §5.3).

Staging and commit are separate so that a cancelled task applies nothing: :func:`stage_import` reads
only, and the returned ``apply`` makes the changes (on the event loop) and returns an ``undo``.

Semantics:

* List imports (``HIERARCHY_DATA``) create or update members matched by code (or by name when the
  import maps no code column). Numbered lists are keyed by code and name their new members ``#n``.
  A parent, or a LIST-formatted property, must name an existing member; numbers and booleans must
  parse. A bad row is rejected into the dump and counted as ignored.
* Module imports (``MODULE_DATA``) resolve every dimension column to an existing member. A row whose
  member does not exist is rejected with ``Item not located in <list> list: <value>``. Cells are
  replaced, never added, so re-running the same rows is idempotent; empty values leave a cell as it is.
* The task fails as a whole (``successful: false``, no dump) when the file has no content for the user,
  its upload is incomplete, the header lacks a mapped column, or a mapping parameter is missing or wrong.
  Partial rejections keep ``successful: true`` with ``failureDumpAvailable: true``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from ml_connector.sandbox.anaplan.csvio import CsvWriter, read_rows
from ml_connector.sandbox.anaplan.state import (
    CellValue,
    FileContent,
    FormatError,
    ImportDef,
    ListDef,
    Member,
    ModelState,
    Module,
)

Undo = Callable[[], None]
#: applies staged changes in slices (the task engine runs each slice on the event loop, so requests are
#: served in between and never see a half-done slice) and returns how to undo them
Apply = Callable[[], Generator[None, None, Undo]]
SLICE = 20_000

_UNSET = object()
CANCEL_CHECK_ROWS = 2000


class Cancelled(Exception):
    pass


class ImportFailure(Exception):
    """The import fails as a whole; the message becomes the result detail."""

    def __init__(self, message: str, kind: str = "importFailed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ActionOutcome:
    result: dict[str, Any]
    dump: bytes | None = None
    apply: Apply | None = None
    nested: list[tuple[int, bytes]] = field(default_factory=list)


def failed_result(object_id: int, name: str, message: str, kind: str = "importFailed") -> dict[str, Any]:
    return {
        "successful": False,
        "failureDumpAvailable": False,
        "objectId": str(object_id),
        "objectName": name,
        "details": [{"type": kind, "localMessageText": message, "occurrences": 1, "values": []}],
    }


def stage_import(
    model: ModelState,
    imp: ImportDef,
    user_id: str,
    mapping_parameters: list[dict[str, Any]],
    cancel: threading.Event,
    progress: Callable[[float], None] = lambda _: None,
) -> ActionOutcome:
    try:
        content = _content(model, imp, user_id)
        source = model.files[imp.file_id] if imp.file_id else None
        assert source is not None
        total = max(content.size, 1)
        stream, rows = read_rows(content.iter_chunks(), source)
        header, data_rows = _header(rows, source.header_row, source.first_data_row)
        positions = _positions(imp, header)
        if imp.import_type == "HIERARCHY_DATA":
            stager: _Stager = _ListStager(model, imp, model.lists[imp.target_id], positions)
        else:
            stager = _ModuleStager(model, imp, model.modules[imp.target_id], positions, mapping_parameters)
    except ImportFailure as exc:
        return ActionOutcome(failed_result(imp.id, imp.name, str(exc), exc.kind))

    dump = CsvWriter()
    dump.write(["_Status_", *header, "_Line_", "_Error_1_"])
    width = len(header)
    for count, (line, row) in enumerate(data_rows, start=1):
        if count % CANCEL_CHECK_ROWS == 0:
            if cancel.is_set():
                raise Cancelled
            progress(stream.consumed / total)
        if not any(row):
            stager.blank += 1
            continue
        if len(row) < width:
            row = row + [""] * (width - len(row))
        error = stager.row(row)
        if error is not None:
            dump.write(["E", *row[:width], line, error])
    if cancel.is_set():
        raise Cancelled
    rejected = dump.rows - 1
    result = {
        "successful": True,
        "failureDumpAvailable": rejected > 0,
        "objectId": str(imp.id),
        "objectName": imp.name,
        "details": [stager.detail(rejected)],
    }
    return ActionOutcome(result, dump.getvalue() if rejected else None, stager.apply)


def _content(model: ModelState, imp: ImportDef, user_id: str) -> FileContent:
    if imp.file_id is None or imp.file_id not in model.files:
        raise ImportFailure(f"Import {imp.name} has no file data source", "fileNotFound")
    name = model.files[imp.file_id].name
    content = model.content(user_id, imp.file_id)
    if content is None or not content.has_content():
        raise ImportFailure(
            f"The file {name} has no content for this user: upload it before running the import", "fileNotFound"
        )
    missing = content.missing()
    if missing or (content.declared < 0 and not content.completed):
        raise ImportFailure(
            f"The upload of file {name} is incomplete (missing chunks or not completed)", "fileIncomplete"
        )
    return content


def _header(
    rows: Iterator[list[str]], header_row: int, first_data_row: int
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    header: list[str] | None = None
    line = 0
    for row in rows:
        line += 1
        if line == header_row:
            header = [h.strip() for h in row]
            break
    if header is None:
        raise ImportFailure("The file is empty: no header row", "headerMismatch")

    def data() -> Iterator[tuple[int, list[str]]]:
        n = line
        for row in rows:
            n += 1
            if n >= first_data_row:
                yield n, row

    return header, data()


def _positions(imp: ImportDef, header: list[str]) -> dict[str, int]:
    index = {name: i for i, name in enumerate(header)}
    missing = [h for h in imp.header_names if h not in index]
    if missing:
        raise ImportFailure(
            f"The file's column headers do not match the import definition: missing {', '.join(missing)} "
            f"(expected {', '.join(imp.header_names)}; found {', '.join(header)})",
            "headerMismatch",
        )
    return {h: index[h] for h in imp.mapping}


class _Stager:
    blank = 0

    def row(self, row: list[str]) -> str | None:
        raise NotImplementedError

    def detail(self, rejected: int) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self) -> Generator[None, None, Undo]:
        raise NotImplementedError


class _ListStager(_Stager):
    def __init__(self, model: ModelState, imp: ImportDef, lst: ListDef, positions: dict[str, int]) -> None:
        self.lst = lst
        self.lists = model.lists_by_name()
        self.code_col = self.name_col = self.parent_col = None
        self.width = len(lst.properties)
        self.prop_cols: list[tuple[int, int, Callable[[str], Any]]] = []
        for header, target in imp.mapping.items():
            col = positions[header]
            if target == "code":
                self.code_col = col
            elif target == "name":
                self.name_col = col
            elif target == "parent":
                self.parent_col = col
            elif target.startswith("property:"):
                index = lst.prop_index[target.split(":", 1)[1]]
                self.prop_cols.append((col, index, lst.converter(index, self.lists)))
        #: key -> [existing member | None, name | None, code, parent id | _UNSET, [value | _UNSET per property]]
        self.staged: dict[str, list[Any]] = {}
        self.staged_names: dict[str, str] = {}
        self.created = self.updated = self.renamed = 0

    def _existing(self, code: str, name: str) -> Member | None:
        if self.code_col is not None:
            return self.lst.by_code.get(code)
        return self.lst.by_name.get(name)

    def row(self, row: list[str]) -> str | None:
        lst = self.lst
        code = row[self.code_col].strip() if self.code_col is not None else ""
        name = row[self.name_col].strip() if self.name_col is not None else ""
        if self.code_col is not None and not code and (lst.numbered or not name):
            return "Code is required" if lst.numbered else "Name or code is required"
        if self.code_col is None and not name:
            return "Name is required"
        key = code or name
        member = self._existing(code, name)
        staged = self.staged.get(key)
        if member is None and staged is None and not lst.numbered and not name:
            return f"Name is required to create item with code {code}"
        if name and not lst.numbered:
            owner = lst.by_name.get(name)
            if owner is not None and owner is not member:
                return f"Duplicate name: {name} is already used by another item"
            other_key = self.staged_names.get(name)
            if other_key is not None and other_key != key:
                return f"Duplicate name: {name} is already used by another item"
        parent: Any = _UNSET
        if self.parent_col is not None:
            raw = row[self.parent_col].strip()
            if raw:
                if lst.parent_list is None:
                    return f"List {lst.name} has no parent hierarchy: {raw}"
                found = lst.parent_list.find(raw)
                if found is None:
                    return f"Item not located in {lst.parent_list.name} list: {raw}"
                parent = found.id
            else:
                parent = None
        props: list[tuple[int, Any]] = []
        try:
            for col, index, convert in self.prop_cols:
                props.append((index, convert(row[col].strip())))
        except FormatError as exc:
            return str(exc)
        if staged is None:
            staged = self.staged[key] = [member, None, code, _UNSET, [_UNSET] * self.width]
            if member is None:
                self.created += 1
            else:
                self.updated += 1
        else:
            self.updated += 1
        if name and not lst.numbered:
            if staged[1] and staged[1] != name:
                self.staged_names.pop(staged[1], None)
            staged[1] = name
            self.staged_names[name] = key
        if parent is not _UNSET:
            staged[3] = parent
        values = staged[4]
        for index, value in props:
            values[index] = value
        return None

    def detail(self, rejected: int) -> dict[str, Any]:
        ok = self.created + self.updated
        total = ok + rejected + self.blank
        ignored = rejected + self.blank
        values = [
            "hierarchyName", self.lst.name,
            "successRowCount", ok, "successCreateCount", self.created, "successUpdateCount", self.updated,
            "warningsRowCount", 0, "warningsCreateCount", 0, "warningsUpdateCount", 0,
            "failedCount", 0, "ignoredCount", ignored, "totalRowCount", total,
            "totalCreateCount", self.created, "totalUpdateCount", self.updated,
            "invalidCount", rejected, "updatedCount", self.updated, "renamedCount", self._renamed(),
            "createdCount", self.created,
        ]  # fmt: skip
        return {
            "type": "hierarchyRowsProcessed",
            "localMessageText": (
                f"{self.lst.name}: {ok} ({self.created}/{self.updated}) rows successful, {ignored} ignored "
            ),
            "occurrences": 0,
            "values": [str(v) for v in values],
        }

    def _renamed(self) -> int:
        return sum(
            1 for member, name, *_ in self.staged.values() if member is not None and name and name != member.name
        )

    def apply(self) -> Generator[None, None, Undo]:
        lst = self.lst
        added: list[Member] = []
        previous: list[tuple[Member, str, str, int | None, list[Any]]] = []
        for n, (member, name, code, parent, props) in enumerate(self.staged.values(), start=1):
            if n % SLICE == 0:
                yield
            if member is None:
                values = [None if v is _UNSET else v for v in props]
                added.append(lst.add(name, code, None if parent is _UNSET else parent, values))
                continue
            previous.append((member, member.name, member.code, member.parent, list(member.props)))
            if name and name != member.name:
                lst.rename(member, name)
            if parent is not _UNSET:
                member.parent = parent
            for index, value in enumerate(props):
                if value is not _UNSET:
                    member.props[index] = value

        def undo() -> None:
            for m in added:
                lst.remove(m)
            for member, name, code, parent, props in previous:
                lst.rename(member, name)
                lst.recode(member, code)
                member.parent = parent
                member.props = props

        return undo


class _ModuleStager(_Stager):
    def __init__(
        self,
        model: ModelState,
        imp: ImportDef,
        module: Module,
        positions: dict[str, int],
        mapping_parameters: list[dict[str, Any]],
    ) -> None:
        self.module = module
        params = _mapping_parameters(model, module, mapping_parameters)
        #: per module dimension: (column | None, fixed member id | None)
        self.dims: list[tuple[int | None, int | None, ListDef]] = []
        columns = {t.split(":", 1)[1]: positions[h] for h, t in imp.mapping.items() if t.startswith("dimension:")}
        for dim in module.dimensions:
            if dim.name in columns:
                self.dims.append((columns[dim.name], None, dim))
                continue
            fixed = imp.fixed.get(dim.name)
            member_name = params.get(dim.name, fixed)
            if member_name is None:
                raise ImportFailure(
                    f"A mapping parameter for dimension {dim.name} is required: pass "
                    f'{{"entityType": "{dim.name}", "entityName": ...}} in mappingParameters',
                    "mappingParameterMissing",
                )
            member = dim.find(member_name)
            if member is None:
                raise ImportFailure(f"Item not located in {dim.name} list: {member_name}", "mappingParameterInvalid")
            self.dims.append((None, member.id, dim))
        self.items: list[tuple[int, Any]] = []
        for header, target in imp.mapping.items():
            if target.startswith("lineitem:"):
                li = module.line_item(target.split(":", 1)[1])
                assert li is not None
                self.items.append((positions[header], li))
        self.staged: dict[int, dict[tuple[int, ...], CellValue]] = {li.id: {} for _, li in self.items}
        self.ok = 0
        self.cells = 0

    def row(self, row: list[str]) -> str | None:
        key: list[int] = []
        for col, fixed, dim in self.dims:
            if col is None:
                key.append(fixed)  # type: ignore[arg-type]
                continue
            raw = row[col]
            member = dim.find(raw)
            if member is None:
                return f"Item not located in {dim.name} list: {raw.strip()}"
            key.append(member.id)
        values: list[tuple[int, CellValue]] = []
        for col, li in self.items:
            raw = row[col].strip()
            if raw == "":
                continue
            try:
                values.append((li.id, li.convert(raw)))
            except FormatError as exc:
                return f"{li.name}: {exc}"
        cell_key = tuple(key)
        for li_id, value in values:
            self.staged[li_id][cell_key] = value
        self.cells += len(values)
        self.ok += 1
        return None

    def detail(self, rejected: int) -> dict[str, Any]:
        total = self.ok + rejected + self.blank
        ignored = rejected + self.blank
        values = [
            "moduleName", self.module.name,
            "successRowCount", self.ok, "warningsRowCount", 0, "failedCount", 0,
            "ignoredCount", ignored, "invalidCount", rejected, "totalRowCount", total,
            "cellsChangedCount", self.cells,
        ]  # fmt: skip
        return {
            "type": "moduleRowsProcessed",
            "localMessageText": f"{self.module.name}: {self.ok} rows successful, {ignored} ignored ",
            "occurrences": 0,
            "values": [str(v) for v in values],
        }

    def apply(self) -> Generator[None, None, Undo]:
        previous: dict[int, dict[tuple[int, ...], CellValue | None]] = {}
        for li_id, staged in self.staged.items():
            cells = self.module.cells[li_id]
            previous[li_id] = {k: cells.get(k) for k in staged}
            cells.update(staged)
            yield

        def undo() -> None:
            for li_id, old in previous.items():
                cells = self.module.cells[li_id]
                for k, v in old.items():
                    if v is None:
                        cells.pop(k, None)
                    else:
                        cells[k] = v

        return undo


def _mapping_parameters(model: ModelState, module: Module, params: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for param in params:
        if not isinstance(param, dict):
            raise ImportFailure(f"Invalid mapping parameter: {param!r}", "mappingParameterInvalid")
        entity_type = str(param.get("entityType", ""))
        entity_name = str(param.get("entityName", ""))
        dim = model.dimension_by_key(entity_type)
        if dim is None or dim not in module.dimensions:
            raise ImportFailure(
                f"Unknown dimension in mappingParameters: {entity_type} (module {module.name} has "
                f"{', '.join(d.name for d in module.dimensions)})",
                "mappingParameterInvalid",
            )
        if dim.find(entity_name) is None:
            raise ImportFailure(f"Item not located in {dim.name} list: {entity_name}", "mappingParameterInvalid")
        out[dim.name] = entity_name
    return out
