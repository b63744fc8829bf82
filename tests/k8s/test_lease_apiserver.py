"""kube.lease on a real kube-apiserver: resourceVersion conflicts, expiry, release, loss detection."""

from __future__ import annotations

import asyncio
import secrets

import kubernetes
import pytest

from ml_connector.kube.lease import KubernetesLeaseBackend, LeaseRecord, LockLost, ModelLock

pytestmark = pytest.mark.k8s


def contender(api: kubernetes.client.ApiClient, namespace: str, lease: str, holder: str, **options: float) -> ModelLock:
    settings = {"duration": 30, "renew_every": 0.2, "renew_deadline": 5.0, "retry_initial": 0.05, "retry_max": 0.2}
    settings.update(options)
    return ModelLock(
        KubernetesLeaseBackend(api),
        namespace,
        lease,
        holder,
        holder_name=f"{namespace}/{holder}",
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
def lease_name() -> str:
    return f"ml-connector-model-{secrets.token_hex(8)}"


async def test_two_contenders_serialize(k8s_api: kubernetes.client.ApiClient, namespace: str, lease_name: str) -> None:
    a = contender(k8s_api, namespace, lease_name, "run-a")
    b = contender(k8s_api, namespace, lease_name, "run-b")
    order: list[str] = []
    a_holds, b_waits = asyncio.Event(), asyncio.Event()
    waits: list[str | None] = []

    async def first() -> None:
        async with a.held():
            order.append("a in")
            a_holds.set()
            await b_waits.wait()  # b is provably blocked while a holds the lock
            order.append("a out")

    def on_wait(record: LeaseRecord) -> None:
        waits.append(record.holder_name)
        b_waits.set()

    async def second() -> None:
        await a_holds.wait()
        async with b.held(on_wait=on_wait):
            order.append("b in")
            order.append("b out")

    async with asyncio.timeout(60):
        await asyncio.gather(first(), second())
    assert order == ["a in", "a out", "b in", "b out"]
    assert waits == [f"{namespace}/run-a"]
    final = await KubernetesLeaseBackend(k8s_api).get(namespace, lease_name)
    assert final is not None
    assert final.holder is None  # released
    assert final.transitions == 1


async def test_simultaneous_attempts_have_exactly_one_winner(
    k8s_api: kubernetes.client.ApiClient, namespace: str, lease_name: str
) -> None:
    locks = [contender(k8s_api, namespace, lease_name, f"run-{i}") for i in range(4)]
    results = await asyncio.gather(*(lock.try_acquire() for lock in locks))
    assert results.count(True) == 1


async def test_a_holder_that_stops_renewing_loses_the_lease_after_its_duration(
    k8s_api: kubernetes.client.ApiClient, namespace: str, lease_name: str
) -> None:
    crashed = contender(k8s_api, namespace, lease_name, "run-crashed", duration=1, renew_every=0.2, renew_deadline=0.6)
    await crashed.acquire()  # ...and never renews, as if its pod died
    successor = contender(k8s_api, namespace, lease_name, "run-next", duration=1, renew_every=0.2, renew_deadline=0.6)
    seen: list[str | None] = []
    async with asyncio.timeout(60):
        await successor.acquire(on_wait=lambda record: seen.append(record.holder))
    assert seen == ["run-crashed"]
    record = await KubernetesLeaseBackend(k8s_api).get(namespace, lease_name)
    assert record is not None
    assert (record.holder, record.transitions) == ("run-next", 1)
    with pytest.raises(LockLost, match="taken over by run-next"):
        await crashed.renew()


async def test_release_lets_the_waiter_in_without_waiting_for_expiry(
    k8s_api: kubernetes.client.ApiClient, namespace: str, lease_name: str
) -> None:
    # A one-hour lease: the waiter can only get in through the release.
    holder = contender(k8s_api, namespace, lease_name, "run-a", duration=3600, renew_every=60, renew_deadline=600)
    waiter = contender(k8s_api, namespace, lease_name, "run-b", duration=3600, renew_every=60, renew_deadline=600)
    await holder.acquire()
    waiting = asyncio.Event()
    task = asyncio.create_task(waiter.acquire(on_wait=lambda record: waiting.set()))
    async with asyncio.timeout(60):
        await waiting.wait()
        assert not task.done()
        await holder.release()
        await task
    record = await KubernetesLeaseBackend(k8s_api).get(namespace, lease_name)
    assert record is not None
    assert record.holder == "run-b"


async def test_guarded_work_is_stopped_when_the_lease_is_taken_over(
    k8s_api: kubernetes.client.ApiClient, namespace: str, lease_name: str
) -> None:
    lock = contender(k8s_api, namespace, lease_name, "run-a", duration=30, renew_every=0.1, renew_deadline=5)
    backend = KubernetesLeaseBackend(k8s_api)

    async def guarded_work() -> None:
        async with asyncio.timeout(60), lock.held():
            current = await backend.get(namespace, lease_name)
            assert current is not None
            # Someone else writes the Lease (say, an operator that judged the holder dead).
            await backend.replace(
                namespace, lease_name, LeaseRecord("intruder", 30, resource_version=current.resource_version)
            )
            await asyncio.Event().wait()  # runs until cancelled

    with pytest.raises(LockLost, match="taken over by intruder"):
        await guarded_work()
    record = await backend.get(namespace, lease_name)
    assert record is not None
    assert record.holder == "intruder"  # the loser did not clear someone else's lease
