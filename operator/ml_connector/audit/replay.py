"""Rebuild canonical records from stored payloads, so a replay run can write the same file again.

A payload is :meth:`Record.to_dict` output (amounts and dates as strings); :func:`record_from_payload`
turns it back into the frozen dataclass, and :func:`replay_records` streams a run's payloads as records,
checking that each one reproduces the content hash stored with it (a payload that does not is reported,
never silently re-sent).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.audit.store import AuditError, AuditStore, EventStatus, RecordEvent, StoredEvent
from ml_connector.records import RECORD_TYPES, Record, content_hash


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayItem:
    event: StoredEvent
    record: Record


def _parse_datetime(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _converter(hint: Any) -> Callable[[Any], Any]:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported field type {hint!r}")
        hint = args[0]
    base: Callable[[Any], Any]
    if hint is Decimal:
        base = lambda v: Decimal(str(v))  # noqa: E731
    elif hint is dt.datetime:
        base = _parse_datetime
    elif hint is dt.date:
        base = lambda v: dt.date.fromisoformat(str(v))  # noqa: E731
    elif hint is int:
        base = int
    elif hint is str:
        base = str
    elif hint is bool:
        base = bool
    else:
        raise TypeError(f"unsupported field type {hint!r}")
    if optional:
        return lambda v: None if v is None else base(v)
    return base


_CONVERTERS: dict[str, dict[str, Callable[[Any], Any]]] = {}


def _field_converters(cls: type[Record]) -> dict[str, Callable[[Any], Any]]:
    converters = _CONVERTERS.get(cls.entity)
    if converters is None:
        hints = typing.get_type_hints(cls)
        converters = {f.name: _converter(hints[f.name]) for f in dataclasses.fields(cls)}
        _CONVERTERS[cls.entity] = converters
    return converters


def record_from_payload(entity: str, payload: Mapping[str, Any]) -> Record:
    """The canonical record of ``entity`` described by a stored ``payload``."""
    cls = typing.cast(Mapping[str, type[Record]], RECORD_TYPES).get(entity)
    if cls is None:
        raise AuditError(f"stored payload has unknown entity {entity!r} (known: {', '.join(RECORD_TYPES)})")
    converters = _field_converters(cls)
    unknown = set(payload) - set(converters)
    if unknown:
        raise AuditError(f"stored {entity} payload has fields this version does not know: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, convert in converters.items():
        if name not in payload:
            continue  # the dataclass default applies (or the constructor names the missing field)
        try:
            values[name] = convert(payload[name])
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise AuditError(f"stored {entity} payload has an invalid {name!r}: {payload[name]!r}") from exc
    try:
        return cls(**values)
    except TypeError as exc:
        raise AuditError(f"stored {entity} payload cannot be rebuilt: {exc}") from exc


async def replay_records(
    store: AuditStore, run_id: str, *, only_failed: bool = False, flow: str | None = None
) -> AsyncIterator[ReplayItem]:
    """Stream the records run ``run_id`` sent (only the rejected ones with ``only_failed``)."""
    async for event in store.payloads(run_id, only_failed=only_failed, flow=flow):
        assert event.payload is not None  # payloads() only yields events that carry one
        record = record_from_payload(event.entity, event.payload)
        rebuilt = content_hash(record)
        if rebuilt != event.content_hash:
            raise AuditError(
                f"stored payload of {event.entity} {event.natural_key} (run {event.run_id}, event {event.id}) does not"
                f" reproduce its content hash: refusing to replay a record that is not what was sent"
            )
        yield ReplayItem(event, record)


def replayed_event(item: ReplayItem, *, run_id: str) -> RecordEvent:
    """The ``replayed`` event (with payload) a replay run writes for ``item``."""
    return RecordEvent.of(
        item.record,
        run_id=run_id,
        flow=item.event.flow,
        status=EventStatus.REPLAYED,
        with_payload=True,
        hash_=item.event.content_hash,
        reason=f"replay of run {item.event.run_id}",
    )
