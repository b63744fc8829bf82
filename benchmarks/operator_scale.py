"""Operator scale: SyncRun-to-Job latency and operator memory with 10, 100 and 500 SyncConnections.

    .venv/bin/python benchmarks/operator_scale.py [--sizes 10,100,500] [--steady 20] [--interval 30]

On the test control plane (etcd + kube-apiserver from ``scripts/envtest.sh``, CRDs applied), per size N:
a fresh namespace with the chart's RBAC, a fresh ``ml-connector operator`` process (the Deployment's flags,
the operator ServiceAccount's token, the given reconcile interval), N SyncConnections (hourly schedule, so
the timers and schedule bookkeeping run as in production), then

* **burst**: one SyncRun per connection, all created at once (8 client threads): the latency from the
  create call returning to the Job appearing in a watch, p50 / p95 / max, and the time until all Jobs exist;
* **steady**: ``--steady`` more SyncRuns, one at a time (each waits for its Job): the latency of a single
  run on an operator that already holds N connections and N runs;
* the operator's resident memory (VmRSS) after settling, and its peak (VmHWM).

No kubelet: the Jobs are created, never run (this measures the operator, not the workers).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
from envtest import CRD_DIR, running_control_plane  # noqa: E402
from operator_harness import (  # noqa: E402
    FULLNAME,
    apply_rbac,
    deployment_command,
    render_chart,
    service_account_token,
    start_operator,
    wait_for,
)

GROUP, VERSION = "ml-connector.com", "v1alpha1"


def apply_crds(api: kubernetes.client.ApiClient) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        extensions.create_custom_resource_definition(body=body)
        names.append(body["metadata"]["name"])
    for name in names:
        wait_for(
            lambda name=name: any(
                c.type == "Established" and c.status == "True"
                for c in extensions.read_custom_resource_definition(name).status.conditions or []
            ),
            timeout=60,
            what=f"CRD {name}",
        )


def connection(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncConnection",
        "metadata": {"name": name},
        "spec": {
            "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor"}, "m3": {"company": "100"}},
            "anaplan": {
                "workspace": "Finance",
                "model": "FP&A",
                "auth": {"method": "basic", "credentialsSecretRef": {"name": "ap"}},
            },
            "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
            "schedule": "0 * * * *",
        },
    }


def syncrun(name: str, connection_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncRun",
        "metadata": {"name": name},
        "spec": {"connectionRef": {"name": connection_name}},
    }


class JobWatch:
    """Records when each Job first appears (monotonic clock), from a watch on the namespace."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self._batch = kubernetes.client.BatchV1Api(api)
        self._namespace = namespace
        self._stop = threading.Event()
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(self._batch.list_namespaced_job, self._namespace, timeout_seconds=5):
                name = event["object"].metadata.name
                with self._condition:
                    self.seen.setdefault(name, time.monotonic())
                    self._condition.notify_all()
                if self._stop.is_set():
                    watch.stop()
                    break

    def wait(self, name: str, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        with self._condition:
            while name not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Job {name} did not appear within {timeout}s")
                self._condition.wait(left)
            return self.seen[name]

    def stop(self) -> None:
        self._stop.set()


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_size(
    plane: Any, api: kubernetes.client.ApiClient, workdir: Path, size: int, steady: int, interval: float
) -> dict[str, Any]:
    core = kubernetes.client.CoreV1Api(api)
    objects = kubernetes.client.CustomObjectsApi(api)
    suffix = secrets.token_hex(3)
    release, namespace = f"mlc-{suffix}", f"bench-{size}-{suffix}"
    for name in (release, namespace):
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    chart = render_chart(release, [namespace])
    apply_rbac(api, [doc for doc in chart if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding")])
    token = service_account_token(api, release, f"{FULLNAME}-operator")
    kubeconfig = plane.kubeconfig_for("operator", token, workdir / f"operator-{size}.kubeconfig")
    args, env = deployment_command(chart)
    operator = start_operator(args, env, kubeconfig, workdir / f"operator-{size}.log", interval=interval)
    watch = JobWatch(api, namespace)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: objects.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, "syncconnections", connection(f"conn-{n:04d}")
                    ),
                    range(size),
                )
            )

        def observed() -> bool:
            items = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "syncconnections")["items"]
            return sum(1 for item in items if (item.get("status") or {}).get("observedGeneration")) == size

        wait_for(observed, timeout=600, interval=0.5, what=f"{size} connections reconciled")
        connections_ready = time.monotonic() - started

        created: dict[str, float] = {}

        def create(n: int) -> None:
            name = f"conn-{n:04d}-run"
            objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "syncruns", syncrun(name, f"conn-{n:04d}")
            )
            created[name] = time.monotonic()

        burst_start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(size)))
        burst = [watch.wait(name) - at for name, at in created.items()]
        burst_total = max(watch.seen[name] for name in created) - burst_start

        single = []
        for n in range(steady):
            name = f"steady-{n:03d}"
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "syncruns", syncrun(name, "conn-0000"))
            at = time.monotonic()
            single.append(watch.wait(name) - at)
        time.sleep(min(interval, 10))  # let the timers tick over N connections once more
        rss, peak = memory(operator.popen.pid)
        text = httpx.get(operator.metrics_url, timeout=10).text
        errors = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("controller_runtime_reconcile_errors_total{")
        )
        return {
            "size": size,
            "connections_reconciled_s": connections_ready,
            "burst_p50": statistics.median(burst),
            "burst_p95": percentile(burst, 0.95),
            "burst_max": max(burst),
            "burst_all_jobs_s": burst_total,
            "steady_p50": statistics.median(single) if single else float("nan"),
            "steady_p95": percentile(single, 0.95) if single else float("nan"),
            "rss_mib": rss / 2**20,
            "peak_mib": peak / 2**20,
            "reconcile_errors": errors,
        }
    finally:
        watch.stop()
        operator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,500", help="numbers of SyncConnections, comma-separated")
    parser.add_argument("--steady", type=int, default=20, help="single SyncRuns timed one at a time after the burst")
    parser.add_argument("--interval", type=float, default=30.0, help="the operator's reconcile interval (seconds)")
    options = parser.parse_args()
    sizes = [int(part) for part in options.sizes.split(",") if part]
    with tempfile.TemporaryDirectory(prefix="ml-connector-operator-scale-") as tmp:
        workdir = Path(tmp)
        with running_control_plane(workdir / "plane") as plane:
            api = kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))
            apply_crds(api)
            results = [run_size(plane, api, workdir, size, options.steady, options.interval) for size in sizes]
    print(
        f"{'connections':>11} {'reconciled':>10} | {'burst p50':>9} {'p95':>7} {'max':>7} {'all Jobs':>9} |"
        f" {'single p50':>10} {'p95':>7} | {'RSS':>8} {'peak':>8} | errors"
    )
    for r in results:
        burst = (
            f"{r['burst_p50']:>8.3f}s {r['burst_p95']:>6.3f}s {r['burst_max']:>6.3f}s {r['burst_all_jobs_s']:>8.1f}s"
        )
        single = f"{r['steady_p50']:>9.3f}s {r['steady_p95']:>6.3f}s"
        memory_ = f"{r['rss_mib']:>6.1f}Mi {r['peak_mib']:>6.1f}Mi"
        print(
            f"{r['size']:>11} {r['connections_reconciled_s']:>9.1f}s | {burst} | {single} | {memory_} |"
            f" {r['reconcile_errors']:.0f}"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
