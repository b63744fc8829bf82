"""Build emulated Anaplan models from plain data (used by the default model, tests and benchmarks).

::

    b = ModelBuilder(state, workspace="Finance", name="FP&A Actuals", users=[user])
    b.list("GL Accounts", properties=[PropertyDef("Type")])
    b.time_months((2024, 1), (2026, 12))
    b.module("GL Actuals", ["GL Accounts", "Time"], [("Amount", "NUMBER")])
    b.list_import("Load GL Accounts", "gl_accounts.csv", "GL Accounts", {"Code": "code", "Name": "name"})
    model = b.build()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ml_connector.sandbox.anaplan import ids
from ml_connector.sandbox.anaplan.state import (
    ActionDef,
    AnaplanState,
    CellValue,
    ExportColumn,
    ExportDef,
    FileDef,
    FormatError,
    ImportDef,
    LineItem,
    LineItemFormat,
    ListDef,
    ModelState,
    Module,
    ProcessDef,
    PropertyDef,
    User,
)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: a member given as plain data: ``(code, name)``, ``(code, name, {property: value})`` or a mapping with
#: ``code``, ``name``, ``parent`` and ``properties`` keys
MemberSpec = Sequence[Any] | Mapping[str, Any]


class ModelBuilder:
    def __init__(
        self,
        state: AnaplanState,
        *,
        workspace: str,
        name: str,
        users: Iterable[User] = (),
        model_id: str | None = None,
    ) -> None:
        self.state = state
        ws = next((w for w in state.workspaces.values() if w.name == workspace), None) or state.add_workspace(workspace)
        users = list(users)
        self.model = ModelState(
            id=model_id or ids.upper_hex(),
            name=name,
            workspace=ws,
            users={u.id for u in users},
            last_modified_by=users[0].id if users else ids.lower_hex(),
        )
        self._list_ordinal = 0

    # -- dimensions ------------------------------------------------------------------------------

    def list(
        self,
        name: str,
        *,
        properties: Sequence[PropertyDef | str] = (),
        numbered: bool = False,
        parent: str | None = None,
        code: str = "",
    ) -> ListDef:
        props = [p if isinstance(p, PropertyDef) else PropertyDef(p) for p in properties]
        parent_list = self._list(parent) if parent else None
        lst = ListDef(
            self.model.next_id(ids.LIST),
            name,
            item_base=(201 + self._list_ordinal) * 1_000_000_000,
            properties=props,
            numbered=numbered,
            parent_list=parent_list,
            code=code,
        )
        self._list_ordinal += 1
        self.model.lists[lst.id] = lst
        return lst

    def time_months(self, start: tuple[int, int], end: tuple[int, int]) -> ListDef:
        """Monthly Time dimension; members are named ``Jan 24``; ``2024-01`` and ``Jan 2024`` also resolve."""
        time = ListDef(ids.TIME_DIMENSION_ID, "Time", item_base=ids.TIME_ITEM_BASE, kind="time")
        year, month = start
        while (year, month) <= end:
            member = time.add(f"{MONTHS[month - 1]} {year % 100:02d}")
            time.aliases[f"{year:04d}-{month:02d}"] = member
            time.aliases[f"{MONTHS[month - 1]} {year:04d}"] = member
            month += 1
            if month == 13:
                year, month = year + 1, 1
        self.model.time = time
        return time

    def versions(self, names: Sequence[str] = ("Actual", "Budget", "Forecast")) -> ListDef:
        versions = ListDef(
            ids.VERSION_DIMENSION_ID, "Versions", item_base=ids.VERSION_ITEM * 1_000_000_000, kind="version"
        )
        for name in names:
            versions.add(name)
        self.model.versions = versions
        return versions

    def module(
        self,
        name: str,
        dimensions: Sequence[str],
        line_items: Sequence[tuple[str, LineItemFormat]],
        *,
        code: str = "",
    ) -> Module:
        dims = [self._dimension(d) for d in dimensions]
        module = Module(self.model.next_id(ids.MODULE), name, dims, code=code)
        for li_name, li_format in line_items:
            li = LineItem(self.model.next_id(ids.LINE_ITEM), li_name, module.id, li_format)
            module.line_items.append(li)
            module.cells[li.id] = {}
        self.model.modules[module.id] = module
        return module

    # -- files and actions -----------------------------------------------------------------------

    def file(self, name: str, **fields: Any) -> FileDef:
        existing = next((f for f in self.model.files.values() if f.name == name), None)
        if existing is not None:
            return existing
        f = FileDef(self.model.next_id(ids.FILE), name, **fields)
        self.model.files[f.id] = f
        return f

    def list_import(
        self,
        name: str,
        file_name: str,
        list_name: str,
        columns: Mapping[str, str],
        *,
        code: str = "",
    ) -> ImportDef:
        """``columns``: header -> ``code`` | ``name`` | ``parent`` | ``property:<name>``."""
        lst = self._list(list_name)
        for target in columns.values():
            if target.startswith("property:") and target.split(":", 1)[1] not in lst.prop_index:
                raise KeyError(f"list {list_name!r} has no property {target.split(':', 1)[1]!r}")
        imp = ImportDef(
            self.model.next_id(ids.IMPORT),
            name,
            self.file(file_name).id,
            "HIERARCHY_DATA",
            lst.id,
            list(columns),
            dict(columns),
            code=code,
        )
        self.model.imports[imp.id] = imp
        return imp

    def module_import(
        self,
        name: str,
        file_name: str,
        module_name: str,
        columns: Mapping[str, str],
        *,
        fixed: Mapping[str, str | None] | None = None,
        code: str = "",
    ) -> ImportDef:
        """``columns``: header -> ``dimension:<name>`` | ``lineitem:<name>``; ``fixed``: the other dimensions."""
        module = self._module(module_name)
        mapped = {t.split(":", 1)[1] for t in columns.values() if t.startswith("dimension:")}
        fixed = dict(fixed or {})
        for dim in module.dimensions:
            if dim.name not in mapped and dim.name not in fixed:
                raise KeyError(f"import {name!r} maps no column or fixed value onto dimension {dim.name!r}")
        imp = ImportDef(
            self.model.next_id(ids.IMPORT),
            name,
            self.file(file_name).id,
            "MODULE_DATA",
            module.id,
            list(columns),
            dict(columns),
            fixed=fixed,
            code=code,
        )
        self.model.imports[imp.id] = imp
        return imp

    def export(
        self,
        name: str,
        module_name: str,
        columns: Sequence[tuple[str, str]],
        *,
        filter_line_item: str | None = None,
        file_name: str | None = None,
        code: str = "",
    ) -> ExportDef:
        module = self._module(module_name)
        exp = ExportDef(
            self.model.next_id(ids.EXPORT),
            name,
            module.id,
            [ExportColumn(h, s) for h, s in columns],
            filter_line_item=filter_line_item,
            code=code,
        )
        self.model.exports[exp.id] = exp
        self.model.files[exp.id] = FileDef(exp.id, file_name or f"{name}.csv", origin="export")
        return exp

    def process(self, name: str, action_names: Sequence[str], *, code: str = "") -> ProcessDef:
        action_ids = [self._action_id(n) for n in action_names]
        proc = ProcessDef(self.model.next_id(ids.PROCESS), name, action_ids, code=code)
        self.model.processes[proc.id] = proc
        return proc

    def delete_action(self, name: str, list_name: str, *, code: str = "") -> ActionDef:
        action = ActionDef(self.model.next_id(ids.ACTION), name, self._list(list_name).id, code=code)
        self.model.actions[action.id] = action
        return action

    # -- data ------------------------------------------------------------------------------------

    def members(self, list_name: str, members: Iterable[MemberSpec]) -> None:
        add_members(self.model, self._list(list_name), members)

    def cells(self, module_name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """``rows``: mappings of dimension name -> member (code/name/alias) plus line item name -> value."""
        write_cells(self.model, self._module(module_name), rows)

    def build(self, register: bool = True) -> ModelState:
        if register:
            self.state.models[self.model.id] = self.model
        return self.model

    # -- lookups ---------------------------------------------------------------------------------

    def _list(self, name: str) -> ListDef:
        lst = self.model.list_by_key(name)
        if lst is None:
            raise KeyError(f"no list {name!r}")
        return lst

    def _dimension(self, name: str) -> ListDef:
        dim = self.model.dimension_by_key(name)
        if dim is None:
            raise KeyError(f"no dimension {name!r} (define lists, time_months() and versions() first)")
        return dim

    def _module(self, name: str) -> Module:
        mod = self.model.module_by_key(name)
        if mod is None:
            raise KeyError(f"no module {name!r}")
        return mod

    def _action_id(self, name: str) -> int:
        for registry in (self.model.imports, self.model.exports, self.model.actions):
            for obj in registry.values():
                if obj.name == name:
                    return obj.id
        raise KeyError(f"no import, export or action {name!r}")


def add_members(model: ModelState, lst: ListDef, members: Iterable[MemberSpec]) -> None:
    lists = model.lists_by_name()
    for spec in members:
        if isinstance(spec, Mapping):
            code = str(spec.get("code", "") or "")
            name = spec.get("name")
            parent_key = spec.get("parent")
            props: Mapping[str, Any] = spec.get("properties", {}) or {}
        else:
            code = str(spec[0])
            name = spec[1] if len(spec) > 1 else None
            props = spec[2] if len(spec) > 2 else {}
            parent_key = None
        parent_id = None
        if parent_key:
            parent = lst.parent_list.find(str(parent_key)) if lst.parent_list else None
            if parent is None:
                raise KeyError(f"parent {parent_key!r} not in the parent list of {lst.name!r}")
            parent_id = parent.id
        values: list[Any] = [None] * len(lst.properties)
        for prop_name, value in props.items():
            index = lst.prop_index[prop_name]
            values[index] = lst.convert_prop(index, "" if value is None else _text(value), lists)
        existing = lst.by_code.get(code) if code else None
        if existing is not None:
            if name and not lst.numbered:
                lst.rename(existing, str(name))
            existing.props = values
            existing.parent = parent_id
        else:
            lst.add(None if name is None else str(name), code, parent_id, values)


def write_cells(model: ModelState, module: Module, rows: Iterable[Mapping[str, Any]]) -> int:
    written = 0
    for row in rows:
        key: list[int] = []
        for dim in module.dimensions:
            raw = row.get(dim.name)
            if raw is None and dim.kind == "version":
                raw = row.get("Version")
            if raw is None:
                raise KeyError(f"cell row lacks dimension {dim.name!r}: {row!r}")
            member = dim.find(str(raw))
            if member is None:
                raise KeyError(f"Item not located in {dim.name} list: {raw}")
            key.append(member.id)
        for li in module.line_items:
            if li.name in row and row[li.name] is not None:
                try:
                    value: CellValue = li.coerce(row[li.name])
                except FormatError as exc:
                    raise ValueError(str(exc)) from None
                module.cells[li.id][tuple(key)] = value
                written += 1
    return written


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
