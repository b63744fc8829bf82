"""kstatus / Flux conditions: set, remove and read them without status churn.

``Ready`` is always present; ``Reconciling`` and ``Stalled`` use the abnormal-true polarity and are
present only while True. ``lastTransitionTime`` changes only when a condition's *status* changes
(a new reason or message alone keeps it), as Kubernetes' ``meta.SetStatusCondition`` does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ml_connector.spec import Condition, ConditionStatus

__all__ = [
    "READY",
    "RECONCILING",
    "STALLED",
    "find_condition",
    "is_true",
    "remove_condition",
    "set_condition",
    "set_summary",
]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    generation: int | None = None,
) -> list[Condition]:
    """``conditions`` with ``type_`` set; other conditions and their order are kept."""
    current = find_condition(conditions, type_)
    unchanged = current is not None and current.status == status
    transition = current.last_transition_time if current is not None and unchanged else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    if current is None:
        return [*conditions, updated]
    return [updated if condition.type == type_ else condition for condition in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [condition for condition in conditions if condition.type != type_]


def set_summary(
    conditions: Sequence[Condition],
    *,
    ready: ConditionStatus,
    reason: str,
    message: str,
    reconciling: bool = False,
    stalled: bool = False,
    now: dt.datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Ready plus Reconciling / Stalled (present only while True), all with the same reason and message."""
    result = set_condition(conditions, READY, ready, reason, message, now=now, generation=generation)
    for type_, flag in ((RECONCILING, reconciling), (STALLED, stalled)):
        if flag:
            result = set_condition(result, type_, "True", reason, message, now=now, generation=generation)
        else:
            result = remove_condition(result, type_)
    return result
