"""Kubernetes Events decided by the pure planners, recorded by the handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Event"]


@dataclass(frozen=True)
class Event:
    """An Event to record on the object being reconciled."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
