"""Export actions (a module's cells as tabular CSV into the export's file) and "other" actions."""

from __future__ import annotations

from collections.abc import Generator, Iterator

from ml_connector.sandbox.anaplan.csvio import CsvWriter, split_lines
from ml_connector.sandbox.anaplan.imports import ActionOutcome, Undo
from ml_connector.sandbox.anaplan.state import (
    ActionDef,
    CellValue,
    EmulatorConfig,
    ExportDef,
    FileContent,
    LineItem,
    ListDef,
    Member,
    ModelState,
)


def export_rows(model: ModelState, exp: ExportDef) -> Iterator[list[str]]:
    """Rows of a TABULAR_MULTI_COLUMN export: one per dimension combination that holds a value."""
    module = model.modules[exp.module_id]
    positions = {d.name: i for i, d in enumerate(module.dimensions)}
    if exp.filter_line_item:
        flt = module.line_item(exp.filter_line_item)
        assert flt is not None
        keys = sorted(k for k, v in module.cells[flt.id].items() if v is True)
    else:
        value_items = [
            module.line_item(c.source.split(":", 1)[1]) for c in exp.columns if c.source.startswith("lineitem:")
        ]
        keys = sorted({k for li in value_items if li is not None for k in module.cells[li.id]})
    getters: list[tuple[str, int, ListDef | LineItem | None]] = []
    for col in exp.columns:
        kind, _, name = col.source.partition(":")
        if kind in ("dimension", "dimension-name"):
            dim = module.dimension(name)
            getters.append((kind, positions[dim.name] if dim else -1, dim))
        else:
            getters.append(("lineitem", 0, module.line_item(name)))
    for key in keys:
        row: list[str] = []
        for kind, pos, obj in getters:
            if kind == "lineitem":
                value: CellValue | None = module.cells[obj.id].get(key) if isinstance(obj, LineItem) else None
                row.append("" if value is None else LineItem.text(value))
            elif isinstance(obj, ListDef):
                member = obj.members.get(key[pos])
                if member is None:
                    row.append("")
                elif kind == "dimension" and member.code:
                    row.append(member.code)
                else:
                    row.append(member.name)
            else:
                row.append("")
        yield row


def stage_export(model: ModelState, exp: ExportDef, user_id: str, config: EmulatorConfig) -> ActionOutcome:
    writer = CsvWriter()
    writer.write([c.header for c in exp.columns])
    for row in export_rows(model, exp):
        writer.write(row)
    data = writer.getvalue()
    content = FileContent(0)
    for index, piece in enumerate(split_lines(data, config.export_chunk_size)):
        content.chunks[index] = piece
    content.declared = len(content.chunks)
    result = {
        "successful": True,
        "failureDumpAvailable": False,
        "objectId": str(exp.id),
        "objectName": exp.name,
        "details": [
            {
                "type": "exportSucceeded",
                "localMessageText": f"{exp.name}: {writer.rows - 1} rows exported",
                "occurrences": 0,
                "values": ["rowCount", str(writer.rows - 1)],
            }
        ],
    }

    def apply() -> Generator[None, None, Undo]:
        yield
        key = (user_id, exp.id)
        old = model.contents.get(key)
        old_count = model.files[exp.id].chunk_count
        model.contents[key] = content
        model.files[exp.id].chunk_count = content.declared

        def undo() -> None:
            if old is None:
                model.contents.pop(key, None)
            else:
                model.contents[key] = old
            model.files[exp.id].chunk_count = old_count

        return undo

    return ActionOutcome(result, None, apply)


def stage_action(model: ModelState, action: ActionDef) -> ActionOutcome:
    """``DELETE_BY_SELECTION``: remove every member of the list (and the cells that reference them)."""
    lst = model.lists[action.list_id]
    count = len(lst)
    result = {
        "successful": True,
        "failureDumpAvailable": False,
        "objectId": str(action.id),
        "objectName": action.name,
        "details": [
            {
                "type": "deleteSucceeded",
                "localMessageText": f"{lst.name}: {count} items deleted",
                "occurrences": 0,
                "values": ["deletedCount", str(count)],
            }
        ],
    }

    def apply() -> Generator[None, None, Undo]:
        yield
        members = list(lst.members.values())
        removed_cells = delete_members(model, lst, members)

        def undo() -> None:
            for m in members:
                lst.members[m.id] = m
                lst.by_name[m.name] = m
                if m.code:
                    lst.by_code[m.code] = m
            for li_cells, key, value in removed_cells:
                li_cells[key] = value

        return undo

    return ActionOutcome(result, None, apply)


def delete_members(
    model: ModelState, lst: ListDef, members: list[Member]
) -> list[tuple[dict[tuple[int, ...], CellValue], tuple[int, ...], CellValue]]:
    """Remove members and every module cell on them; returns the removed cells (for undo)."""
    gone = {m.id for m in members}
    for m in members:
        lst.remove(m)
    removed: list[tuple[dict[tuple[int, ...], CellValue], tuple[int, ...], CellValue]] = []
    if not gone:
        return removed
    for module in model.modules.values():
        if lst not in module.dimensions:
            continue
        pos = module.dimensions.index(lst)
        for cells in module.cells.values():
            doomed = [k for k in cells if k[pos] in gone]
            for k in doomed:
                removed.append((cells, k, cells.pop(k)))
    return removed
