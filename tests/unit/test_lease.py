"""kube.lease: the lock algorithm against an in-memory Lease store and a fake clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from ml_connector.kube.lease import LeaseConflict, LeaseRecord, LockLost, ModelLock, lease_name_for_model, micro_time


class FakeLeases:
    """An API server's optimistic concurrency for one namespace: resourceVersion checked on update."""

    def __init__(self) -> None:
        self.items: dict[str, LeaseRecord] = {}
        self.version = 0

    def _stamp(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        return replace(record, resource_version=str(self.version))

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        return self.items.get(name)

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        if name in self.items:
            raise LeaseConflict("exists")
        self.items[name] = self._stamp(record)
        return self.items[name]

    async def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        current = self.items.get(name)
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("conflict")
        self.items[name] = self._stamp(record)
        return self.items[name]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


WALL = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def lock(store: FakeLeases, holder: str, clock: Clock, **options: float) -> ModelLock:
    settings = {"duration": 10, "renew_every": 2.0, "renew_deadline": 6.0, "retry_initial": 0.5, "retry_max": 2.0}
    settings.update(options)
    return ModelLock(
        store,
        "fin",
        "ml-connector-model-abc",
        holder,
        holder_name=f"fin/{holder}",
        clock=clock,
        wall_clock=lambda: WALL,
        **settings,  # type: ignore[arg-type]
    )


async def test_first_contender_creates_the_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a = lock(store, "run-a", clock)
    assert await a.try_acquire()
    record = store.items["ml-connector-model-abc"]
    assert (record.holder, record.duration_seconds, record.transitions) == ("run-a", 10, 0)
    assert record.acquire_time == record.renew_time == "2026-03-01T00:00:00.000000Z"
    assert record.holder_name == "fin/run-a"


async def test_expiry_is_judged_by_local_observation_not_the_holders_clock() -> None:
    store, clock = FakeLeases(), Clock()
    # The holder's clock is years behind: its renewTime looks ancient, yet the lease is honoured.
    await store.create(
        "fin",
        "ml-connector-model-abc",
        LeaseRecord("run-a", 10, "2000-01-01T00:00:00.000000Z", "2000-01-01T00:00:00.000000Z"),
    )
    b = lock(store, "run-b", clock)
    assert not await b.try_acquire()
    clock.now += 9.9
    assert not await b.try_acquire()
    clock.now += 0.2  # 10.1 s without an observed change
    assert await b.try_acquire()
    record = store.items["ml-connector-model-abc"]
    assert (record.holder, record.transitions) == ("run-b", 1)


async def test_a_renewing_holder_is_never_taken_over() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = lock(store, "run-a", clock), lock(store, "run-b", clock)
    assert await a.try_acquire()
    for _ in range(10):
        clock.now += 6  # beyond the duration since B first looked, but A renews in between
        a.wall_clock = lambda: WALL + dt.timedelta(seconds=clock.now)
        await a.renew()
        assert not await b.try_acquire()
    record = store.items["ml-connector-model-abc"]
    assert record.acquire_time == "2026-03-01T00:00:00.000000Z"  # kept across renewals
    assert record.transitions == 0


async def test_renew_after_takeover_raises_lock_lost() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = lock(store, "run-a", clock), lock(store, "run-b", clock)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    clock.now += 11
    assert await b.try_acquire()
    with pytest.raises(LockLost, match="taken over by run-b"):
        await a.renew()


async def test_release_lets_a_waiter_in_at_once_and_never_clobbers_another_holder() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = lock(store, "run-a", clock), lock(store, "run-b", clock)
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await a.release()
    assert store.items["ml-connector-model-abc"].holder is None
    assert await b.try_acquire()  # no waiting for expiry
    await a.release()  # not the holder any more: nothing written
    assert store.items["ml-connector-model-abc"].holder == "run-b"


async def test_stale_writes_lose_to_concurrent_ones() -> None:
    store, clock = FakeLeases(), Clock()
    a = lock(store, "run-a", clock)
    assert await a.try_acquire()
    observed = store.items["ml-connector-model-abc"]
    await store.replace("fin", "ml-connector-model-abc", replace(observed, renew_time=micro_time(WALL)))
    with pytest.raises(LeaseConflict):
        await store.replace("fin", "ml-connector-model-abc", replace(observed, holder="intruder"))


async def test_acquire_waits_reports_the_holder_once_and_sleeps_no_longer_than_the_expiry() -> None:
    store, clock = FakeLeases(), Clock()
    a = lock(store, "run-a", clock)
    assert await a.try_acquire()
    reports: list[str | None] = []
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.now += seconds

    b = lock(store, "run-b", clock)
    b.sleep = fake_sleep
    await b.acquire(on_wait=lambda record: reports.append(record.holder_name))
    assert reports == ["fin/run-a"]
    assert store.items["ml-connector-model-abc"].holder == "run-b"
    assert all(pause <= 2.0 * 1.2 for pause in pauses)
    assert 10 <= sum(pauses) <= 10 + 2.0 * 1.2 + 0.5


def test_settings_must_leave_time_to_renew() -> None:
    with pytest.raises(ValueError, match="duration"):
        lock(FakeLeases(), "x", Clock(), duration=5, renew_deadline=6.0)


def test_lease_names() -> None:
    assert (
        lease_name_for_model("8A81B09D599F3C6E0159F605560C2BBC")
        == "ml-connector-model-8a81b09d599f3c6e0159f605560c2bbc"
    )
    odd = lease_name_for_model("Model With Spaces")
    assert odd.startswith("ml-connector-model-")
    assert len(odd) == len("ml-connector-model-") + 16
