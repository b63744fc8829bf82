"""Dimension alignment with I/O: Infor's accounts, cost centers (and suppliers) against the Anaplan lists,
before any actual is loaded. The comparison itself is pure (:mod:`ml_connector.sync.mapping`).

Per dimension: read the Infor master data and the Anaplan list, compare by code, then (policy ``Add``) add
the missing members through the list's import action (the same upload + import path as the flows) or the
transactional list API, or (policy ``Stop``) let the pipeline stop before loading. Members that were added
(or failed to be) are audited under the dimension's entity (``gl_accounts``, ``cost_centers``,
``suppliers``); members already in the list are not (nothing happened to them).

:class:`KnownMembers` answers, row by row, whether Anaplan would reject a row for a member its list lacks
(what a dry run reports as "rows that would be rejected").
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from ml_connector.audit.store import EventStatus, RecordEvent
from ml_connector.infor import ProductLine, SourceRecordError
from ml_connector.records import Entity, Record
from ml_connector.spec import SyncConnectionSpec
from ml_connector.sync.anaplan_target import AnaplanTarget
from ml_connector.sync.extract import read_records
from ml_connector.sync.mapping import (
    DIMENSION_LABELS,
    AlignmentReport,
    Dimension,
    DimensionAlignment,
    Member,
    MissingMemberPolicy,
    UsageCounter,
    align,
)

SUPPLIERS_LIST = "Suppliers"
SUPPLIER_FLOWS: frozenset[str] = frozenset({"supplier_invoices", "payments", "purchase_orders"})

#: The master-data entity of each dimension, and the record field holding the member code and name.
ENTITY_OF: Mapping[Dimension, Entity] = {
    "account": "gl_accounts",
    "cost_center": "cost_centers",
    "supplier": "suppliers",
}
_CODE_FIELD: Mapping[Dimension, str] = {"account": "account", "cost_center": "cost_center", "supplier": "supplier_id"}


@dataclasses.dataclass
class DimensionState:
    """One dimension as read: Infor's master records by code, the Anaplan list's members, the plan."""

    dimension: Dimension
    list_name: str
    list_id: str
    policy: MissingMemberPolicy
    import_action: str | None
    source: dict[str, Record]
    target: list[Member]
    source_errors: list[SourceRecordError] = dataclasses.field(default_factory=list)
    added: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def entity(self) -> Entity:
        return ENTITY_OF[self.dimension]

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """Member names as they go to Anaplan (see :func:`display_names`)."""
        return display_names({code: str(getattr(r, "name", "")) for code, r in self.source.items()}, self.target)

    def members(self) -> list[Member]:
        return [Member(code, self.names[code]) for code in sorted(self.source)]

    def alignment(self, usage: UsageCounter | None = None) -> DimensionAlignment:
        return align(
            self.dimension, self.members(), self.target, list_name=self.list_name, policy=self.policy, usage=usage
        )


def display_names(source: Mapping[str, str], target: Iterable[Member] = ()) -> dict[str, str]:
    """Names of members as Anaplan gets them: the source name, or ``"<name> (<code>)"`` where the name alone
    would not be unique (Anaplan list names are; Infor's names need not be, e.g. one "Maintenance" cost
    center per plant): used by several codes, or by another code already in the list. Empty: the code."""
    plain = {code: (name.strip() or code) for code, name in source.items()}
    used = Counter(plain.values())
    taken = {m.name.strip(): m.code for m in target}
    out: dict[str, str] = {}
    for code, name in plain.items():
        clash = used[name] > 1 or taken.get(name, code) != code
        out[code] = f"{name} ({code})" if clash else name
    return out


def dimensions_for(spec: SyncConnectionSpec, flows: Iterable[str]) -> list[tuple[Dimension, str, str | None]]:
    """(dimension, list name, import action) to align for a run of ``flows``: accounts and cost centers always,
    suppliers when a supplier-keyed flow runs."""
    mappings = spec.mappings
    out: list[tuple[Dimension, str, str | None]] = [
        ("account", mappings.accounts.list_name, mappings.accounts.import_action),
        ("cost_center", mappings.cost_centers.list_name, mappings.cost_centers.import_action),
    ]
    if SUPPLIER_FLOWS & set(flows):
        out.append(("supplier", SUPPLIERS_LIST, None))
    return out


async def read_dimension(
    product: ProductLine,
    anaplan: AnaplanTarget,
    dimension: Dimension,
    list_name: str,
    import_action: str | None,
    policy: MissingMemberPolicy,
) -> DimensionState:
    errors: list[SourceRecordError] = []
    source: dict[str, Record] = {}
    field = _CODE_FIELD[dimension]
    async for record in read_records(product, ENTITY_OF[dimension], on_error=errors.append):
        source.setdefault(str(getattr(record, field)), record)
    found = await anaplan.find_list(list_name)
    target = await anaplan.list_members(found.id)
    return DimensionState(dimension, found.name, found.id, policy, import_action, source, target, errors)


class KnownMembers:
    """The codes each list will hold once the planned additions are made; checks rows by column values."""

    #: Layout -> columns Anaplan resolves against a list (the default model's import mappings): a row whose
    #: value there is not a member is rejected. Other columns are plain text or numbers.
    CHECKED_COLUMNS: Mapping[str, Mapping[str, Dimension]] = {
        "gl_actuals": {"Account": "account", "Cost Center": "cost_center"},
        "supplier_invoices": {"Supplier": "supplier"},
        "payments": {"Supplier": "supplier"},
    }

    def __init__(self, states: Iterable[DimensionState], *, after_additions: bool = True) -> None:
        self._known: dict[Dimension, tuple[str, frozenset[str]]] = {}
        for state in states:
            codes = {m.code for m in state.target}
            if after_additions and state.policy == "Add":
                codes |= set(state.source) - set(state.failed)
            self._known[state.dimension] = (state.list_name, frozenset(codes))

    def reasons(self, layout: str, values: Mapping[str, object]) -> list[str]:
        """Why Anaplan would reject a row of ``layout`` with these column values (empty: it would load)."""
        out: list[str] = []
        for column, dimension in self.CHECKED_COLUMNS.get(layout, {}).items():
            known = self._known.get(dimension)
            if known is None or column not in values:
                continue
            list_name, codes = known
            code = str(values[column]).strip()
            if code not in codes:
                out.append(f"Item not located in {list_name} list: {code} ({DIMENSION_LABELS[dimension]} unknown)")
        return out


def master_event(record: Record, *, run_id: str, status: EventStatus, reason: str | None = None) -> RecordEvent:
    return RecordEvent.of(
        record,
        run_id=run_id,
        flow=record.entity,
        status=status,
        reason=reason,
        with_payload=status is EventStatus.EXTRACTED,
    )


def source_error_event(error: SourceRecordError, *, run_id: str, flow: str, number: int) -> list[RecordEvent]:
    """The extracted + rejected events of a source row that could not be mapped (no payload: nothing to replay)."""
    key = error.natural_key or f"?{error.entity}#{number}"
    digest = content_hash_of_error(error)
    reason = f"source row could not be read: {error}"
    return [
        RecordEvent(run_id, flow, error.entity, key, digest, EventStatus.EXTRACTED),
        RecordEvent(run_id, flow, error.entity, key, digest, EventStatus.REJECTED, reason=reason),
    ]


def content_hash_of_error(error: SourceRecordError) -> str:
    return hashlib.sha256(repr(sorted(error.to_dict().items(), key=lambda kv: kv[0])).encode()).hexdigest()


def summarize(states: Sequence[DimensionState], usage: UsageCounter | None) -> AlignmentReport:
    return AlignmentReport(tuple(state.alignment(usage) for state in states))
