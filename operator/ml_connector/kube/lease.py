"""The per-model lock: a ``coordination.k8s.io/v1`` Lease, taken by the worker before any Anaplan task.

The algorithm is client-go's leader election (``tryAcquireOrRenew``):

* GET the Lease; CREATE it if missing (a concurrent creator gets AlreadyExists and waits);
* a Lease held by someone else is honoured until ``leaseDurationSeconds`` have passed **since this
  process last saw it change**, measured on the local monotonic clock: another node's ``renewTime``
  is never compared with our wall clock, so clock skew cannot steal a lock;
* every write is an UPDATE carrying the ``resourceVersion`` just read: of two contenders exactly one
  wins, the other gets Conflict and keeps waiting;
* release clears ``holderIdentity`` (guarded the same way), so a waiter takes over on its next poll;
  a holder that dies simply stops renewing and loses the Lease once its duration has passed.

The holder identity is the SyncRun uid. Waiting is reported through a callback (the worker turns it
into ``phase: WaitingForLock``); nobody fails because another run holds the model.

The API calls use the synchronous ``kubernetes`` client (its dynamic client, which sends our JSON as
is: MicroTime values keep their microseconds) in a worker thread via :func:`asyncio.to_thread`, behind
the small :class:`LeaseBackend` protocol so the algorithm can also be driven by a fake in unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ml_connector.kube.naming import short_hash

__all__ = [
    "KubernetesLeaseBackend",
    "LeaseBackend",
    "LeaseConflict",
    "LeaseRecord",
    "LockLost",
    "ModelLock",
    "lease_name_for_model",
]

log = logging.getLogger(__name__)

ANNOTATION_MODEL = "ml-connector.com/anaplan-model"
ANNOTATION_HOLDER_NAME = "ml-connector.com/holder"
_ID = re.compile(r"^[0-9a-z]{1,40}$")


def lease_name_for_model(model_id: str) -> str:
    """``ml-connector-model-<id>`` (Anaplan model ids are 32 hex digits), hashed if the id is unusual."""
    lowered = model_id.lower()
    return f"ml-connector-model-{lowered if _ID.match(lowered) else short_hash(model_id, 16)}"


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (409 AlreadyExists or Conflict)."""


class LockLost(Exception):
    """The Lease was taken over or could not be renewed in time: stop the guarded work."""


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease the lock uses."""

    holder: str | None
    duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0
    resource_version: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def holder_name(self) -> str | None:
        """The holder's readable name (the SyncRun ``namespace/name``) when it recorded one."""
        return self.annotations.get(ANNOTATION_HOLDER_NAME)

    def observed_key(self) -> tuple[Any, ...]:
        """What counts as a change of the record (client-go compares the whole record)."""
        return (self.holder, self.duration_seconds, self.acquire_time, self.renew_time, self.transitions)


class LeaseBackend(Protocol):
    async def get(self, namespace: str, name: str) -> LeaseRecord | None: ...

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Create; raises LeaseConflict if it exists."""
        ...

    async def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Update guarded by ``record.resource_version``; raises LeaseConflict if it changed meanwhile."""
        ...


def micro_time(moment: dt.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesLeaseBackend:
    """:class:`LeaseBackend` on the ``kubernetes`` client (calls run in a thread)."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._leases: Any = None

    def _resource(self) -> Any:
        if self._leases is None:
            from kubernetes.dynamic import DynamicClient

            dynamic_client: Callable[[Any], Any] = DynamicClient  # untyped in the kubernetes package
            self._leases = dynamic_client(self._api_client).resources.get(
                api_version="coordination.k8s.io/v1", kind="Lease"
            )
        return self._leases

    @staticmethod
    def _record(body: Mapping[str, Any]) -> LeaseRecord:
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        return LeaseRecord(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=meta.get("resourceVersion"),
            annotations=dict(meta.get("annotations") or {}),
        )

    @staticmethod
    def _body(name: str, record: LeaseRecord) -> dict[str, Any]:
        spec: dict[str, Any] = {"leaseDurationSeconds": record.duration_seconds, "leaseTransitions": record.transitions}
        if record.holder:
            spec["holderIdentity"] = record.holder
        if record.acquire_time:
            spec["acquireTime"] = record.acquire_time
        if record.renew_time:
            spec["renewTime"] = record.renew_time
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "ml-connector"},
            "annotations": dict(record.annotations),
        }
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _get(self, namespace: str, name: str) -> LeaseRecord | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._record(self._resource().get(name=name, namespace=namespace).to_dict())
        except NotFoundError:
            return None

    def _write(self, verb: str, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        from kubernetes.dynamic.exceptions import ConflictError

        try:
            written = getattr(self._resource(), verb)(body=self._body(name, record), namespace=namespace)
        except ConflictError as exc:
            raise LeaseConflict(f"Lease {namespace}/{name} changed meanwhile ({exc.status})") from None
        return self._record(written.to_dict())

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        return await asyncio.to_thread(self._get, namespace, name)

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return await asyncio.to_thread(self._write, "create", namespace, name, record)

    async def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return await asyncio.to_thread(self._write, "replace", namespace, name, record)


WaitCallback = Callable[[LeaseRecord], Awaitable[None] | None]


@dataclass
class ModelLock:
    """The Lease ``namespace/name`` held as ``holder``; see the module docstring.

    ``duration`` is written as ``leaseDurationSeconds``; the holder renews every ``renew_every`` seconds
    and declares the lock lost (cancelling the guarded work) when no renewal succeeded for
    ``renew_deadline`` seconds. Waiters poll with exponential backoff from ``retry_initial`` to
    ``retry_max`` seconds (with jitter), never sleeping past the moment the holder's Lease would expire.
    """

    backend: LeaseBackend
    namespace: str
    name: str
    holder: str
    holder_name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    duration: int = 60
    renew_every: float = 15.0
    renew_deadline: float = 45.0
    retry_initial: float = 1.0
    retry_max: float = 10.0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    _observed: LeaseRecord | None = field(default=None, init=False, repr=False)
    _observed_at: float = field(default=0.0, init=False, repr=False)
    _last_renewal: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.duration > self.renew_deadline > self.renew_every > 0:
            raise ValueError(
                f"need duration ({self.duration}s) > renew_deadline ({self.renew_deadline}s) "
                f"> renew_every ({self.renew_every}s) > 0"
            )

    @property
    def observed(self) -> LeaseRecord | None:
        """The Lease as last read or written."""
        return self._observed

    def _observe(self, record: LeaseRecord) -> None:
        if self._observed is None or self._observed.observed_key() != record.observed_key():
            self._observed_at = self.clock()
        self._observed = record

    def _annotations(self) -> dict[str, str]:
        annotations = dict(self.annotations)
        if self.holder_name:
            annotations[ANNOTATION_HOLDER_NAME] = self.holder_name
        return annotations

    def _held_by_other(self, record: LeaseRecord) -> bool:
        if record.holder is None or record.holder == self.holder:
            return False
        return self._observed_at + record.duration_seconds > self.clock()

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; True if this holder has it now."""
        now = micro_time(self.wall_clock())
        current = await self.backend.get(self.namespace, self.name)
        if current is None:
            fresh = LeaseRecord(self.holder, self.duration, now, now, 0, annotations=self._annotations())
            try:
                created = await self.backend.create(self.namespace, self.name, fresh)
            except LeaseConflict:
                return False
            self._observe(created)
            return True
        self._observe(current)
        if self._held_by_other(current):
            return False
        mine = current.holder == self.holder
        wanted = replace(
            current,
            holder=self.holder,
            duration_seconds=self.duration,
            acquire_time=current.acquire_time if mine else now,
            renew_time=now,
            transitions=current.transitions if mine else current.transitions + 1,
            annotations={**current.annotations, **self._annotations()},
        )
        try:
            written = await self.backend.replace(self.namespace, self.name, wanted)
        except LeaseConflict:
            return False
        self._observe(written)
        return True

    def _pause(self, attempt: int) -> float:
        base = min(self.retry_max, self.retry_initial * 2 ** max(0, attempt - 1))
        pause = self.rng.uniform(base * 0.8, base * 1.2)
        record = self._observed
        if record is not None and record.holder not in (None, self.holder):
            expiry = self._observed_at + record.duration_seconds - self.clock()
            pause = min(pause, max(expiry, 0.0) + self.retry_initial)
        return pause

    async def acquire(self, on_wait: WaitCallback | None = None) -> None:
        """Wait until the Lease is ours; ``on_wait(lease)`` is called whenever a new holder is seen."""
        attempt = 0
        reported: str | None = None
        while not await self.try_acquire():
            attempt += 1
            record = self._observed
            holder = record.holder if record is not None else None
            if record is not None and holder is not None and holder != reported:
                reported = holder
                log.info("waiting for Lease %s/%s held by %s", self.namespace, self.name, record.holder_name or holder)
                if on_wait is not None:
                    result = on_wait(record)
                    if inspect.isawaitable(result):
                        await result
            await self.sleep(self._pause(attempt))
        self._last_renewal = self.clock()

    async def renew(self) -> None:
        """Renew now; raises :class:`LockLost` if another holder has the Lease."""
        if not await self.try_acquire():
            holder = self._observed.holder if self._observed else None
            raise LockLost(f"Lease {self.namespace}/{self.name} was taken over by {holder}")
        self._last_renewal = self.clock()

    async def release(self) -> None:
        """Give the Lease up (only if still ours): clear the holder so a waiter takes it at once."""
        for _ in range(3):
            current = await self.backend.get(self.namespace, self.name)
            if current is None or current.holder != self.holder:
                return
            cleared = replace(current, holder=None, duration_seconds=1, renew_time=micro_time(self.wall_clock()))
            try:
                self._observe(await self.backend.replace(self.namespace, self.name, cleared))
                return
            except LeaseConflict:
                continue
        log.warning("could not release Lease %s/%s after 3 conflicts; it expires on its own", self.namespace, self.name)

    async def _keep_renewing(self, guarded: asyncio.Task[Any], lost: list[BaseException]) -> None:
        while True:
            await self.sleep(self.renew_every)
            try:
                await self.renew()
            except LockLost as exc:
                lost.append(exc)
            except Exception as exc:  # API unreachable: retry until the deadline
                log.warning("renewing Lease %s/%s failed: %s", self.namespace, self.name, exc)
                if self.clock() - self._last_renewal > self.renew_deadline:
                    lost.append(LockLost(f"Lease {self.namespace}/{self.name} not renewed for {self.renew_deadline}s"))
            if lost:
                guarded.cancel()
                return

    @contextlib.asynccontextmanager
    async def held(self, on_wait: WaitCallback | None = None) -> AsyncIterator[ModelLock]:
        """Hold the Lease around a block, renewing it meanwhile; raises :class:`LockLost` inside the
        block (by cancelling it) if the Lease is lost, and releases it on the way out."""
        await self.acquire(on_wait)
        guarded = asyncio.current_task()
        if guarded is None:
            raise RuntimeError("ModelLock.held() needs a running asyncio task")
        lost: list[BaseException] = []
        renewer = asyncio.create_task(self._keep_renewing(guarded, lost), name=f"renew-lease-{self.name}")
        try:
            yield self
        except asyncio.CancelledError:
            if lost and guarded.uncancel() == 0:
                raise lost[0] from None
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if not lost:
                await asyncio.shield(self.release())
        if lost:  # lost right as the block finished
            raise lost[0]
