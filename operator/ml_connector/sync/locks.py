"""The per-model lock the pipeline takes around Anaplan tasks (imports, exports): one task per model at a time.

:class:`ModelLock` is the protocol; :class:`InProcessLock` serves the CLI (one process, several runs at
most). In a cluster the worker passes an implementation on a ``coordination.k8s.io`` Lease (the kube
layer's ``ModelLock``). Nobody fails because another holds the model: waiters wait, and ``on_wait`` is told
who holds it (the Job shows ``WaitingForLock``).

::

    async with lock.hold(model_id, on_wait=lambda holder: print("waiting for", holder)) as grant:
        ...  # run the import
    grant.waited  # seconds spent waiting
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: Called with a description of the current holder when the lock has to be waited for.
OnWait = Callable[[str], Awaitable[None] | None]


@dataclass
class LockGrant:
    """A held lock: which model, for whom, and how long taking it took."""

    model_id: str
    holder: str
    waited: float = 0.0


class ModelLock(Protocol):
    """Mutual exclusion of Anaplan tasks per model."""

    def hold(
        self, model_id: str, *, on_wait: OnWait | None = None
    ) -> contextlib.AbstractAsyncContextManager[LockGrant]:
        """Wait for the model (calling ``on_wait(holder)`` when someone else has it), hold it for the block."""
        ...


async def _notify(on_wait: OnWait | None, holder: str) -> None:
    if on_wait is None:
        return
    outcome = on_wait(holder)
    if inspect.isawaitable(outcome):
        await outcome


class InProcessLock:
    """One :class:`asyncio.Lock` per model id, shared by every run of this process; ``holder`` names this run."""

    def __init__(self, holder: str = "ml-connector", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.holder = holder
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, str] = {}

    def for_holder(self, holder: str) -> InProcessLock:
        """A view of the same locks for another holder (another run in this process)."""
        view = InProcessLock(holder, clock=self._clock)
        view._locks = self._locks
        view._holders = self._holders
        return view

    def holder_of(self, model_id: str) -> str | None:
        return self._holders.get(model_id)

    @contextlib.asynccontextmanager
    async def hold(self, model_id: str, *, on_wait: OnWait | None = None) -> AsyncIterator[LockGrant]:
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        started = self._clock()
        if lock.locked():
            await _notify(on_wait, self._holders.get(model_id, "another run"))
        await lock.acquire()
        grant = LockGrant(model_id, self.holder, self._clock() - started)
        self._holders[model_id] = self.holder
        try:
            yield grant
        finally:
            self._holders.pop(model_id, None)
            lock.release()
