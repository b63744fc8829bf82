"""A kubelet and Job controller stand-in for the test control plane (which has neither).

For every Job in the watched namespaces it does what the real ones would, as far as our Jobs need:

* "creates a pod": materializes the pod's volumes into a temp dir (``secret`` volumes from the Secrets, as
  files with their ``items``; ``optional`` honoured: a missing optional Secret or key gives an empty or
  partial volume, a missing mandatory one leaves the pod stuck, as a real kubelet does; ``emptyDir``; a
  ``persistentVolumeClaim`` as a directory that outlives pods), rewrites the mount paths the pod's
  environment refers to, and runs the container's command as a local subprocess of the repository's
  ``.venv/bin/ml-connector`` with the pod's environment plus a ``KUBECONFIG`` holding a token of the pod's
  ServiceAccount (TokenRequest API), so the worker talks to the API server with exactly its RBAC;
* writes the Job status as the Job controller does (``startTime``, ``active``/``ready``, ``succeeded``/
  ``failed``, ``SuccessCriteriaMet`` then ``Complete`` with ``completionTime``, ``FailureTarget`` then
  ``Failed``), honouring ``podFailurePolicy`` (``FailJob`` on exit codes -> reason ``PodFailurePolicy``;
  ``Ignore`` on ``DisruptionTarget``), ``backoffLimit`` (a new pod after a counted failure, else
  ``BackoffLimitExceeded``) and ``activeDeadlineSeconds`` (``DeadlineExceeded``);
* stops the pod when its Job is deleted, and can kill a worker mid-run (:meth:`Kubelet.kill`), as a node
  failure or an eviction would.

It polls the Job list every ``interval`` seconds (with the admin client) rather than watching: simpler, and
plenty for tests.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import secrets as random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / ".venv" / "bin" / "ml-connector"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, reason: str, message: str) -> dict[str, str]:
    now = _now()
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastProbeTime": now,
    }


@dataclass
class Pod:
    """One attempt of a Job: a local process standing in for the pod."""

    namespace: str
    job: str
    name: str
    directory: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    disrupted: bool = False
    stuck: str | None = None

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class _JobState:
    namespace: str
    name: str
    uid: str
    pods: list[Pod] = field(default_factory=list)
    started: float | None = None
    finished: bool = False
    deleted: bool = False
    thread: threading.Thread | None = None


class Kubelet:
    """See the module docstring. Use as a context manager (starts and stops the polling thread)."""

    def __init__(
        self,
        kubeconfig: Path,
        control_plane: Any,
        namespaces: list[str],
        workdir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        interval: float = 0.2,
    ) -> None:
        self._api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._batch = kubernetes.client.BatchV1Api(self._api)
        self._plane = control_plane
        self.namespaces = list(namespaces)
        self.workdir = workdir
        self.extra_env = dict(extra_env or {})
        self.interval = interval
        self._jobs: dict[tuple[str, str], _JobState] = {}
        self._tokens: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self.errors: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            states = list(self._jobs.values())
        for state in states:
            for pod in state.pods:
                if pod.process is not None and pod.process.poll() is None:
                    pod.process.kill()
                    pod.process.wait(timeout=10)
        self._api.close()

    # -- queries for tests -------------------------------------------------------------------------

    def pods(self, namespace: str, job: str) -> list[Pod]:
        with self._lock:
            state = self._jobs.get((namespace, job))
            return list(state.pods) if state else []

    def logs(self, namespace: str, job: str) -> str:
        return "\n".join(f"--- pod {pod.name}\n{pod.logs()}" for pod in self.pods(namespace, job))

    def running(self, namespace: str, job: str) -> Pod | None:
        for pod in self.pods(namespace, job):
            if pod.process is not None and pod.process.poll() is None:
                return pod
        return None

    def kill(self, namespace: str, job: str, *, disruption: bool = False) -> bool:
        """SIGKILL the running worker of ``job`` (``disruption``: as an eviction, not counted as a failure)."""
        pod = self.running(namespace, job)
        if pod is None or pod.process is None:
            return False
        pod.disrupted = disruption
        pod.process.send_signal(signal.SIGKILL)
        return True

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep going: a test asserts on outcomes, errors are kept for diagnosis
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        seen: set[tuple[str, str]] = set()
        for namespace in self.namespaces:
            response = self._batch.list_namespaced_job(namespace, _preload_content=False)
            for job in json.loads(response.data)["items"]:
                meta = job["metadata"]
                key = (namespace, meta["name"])
                seen.add(key)
                with self._lock:
                    state = self._jobs.get(key)
                    if state is not None and state.uid != meta["uid"]:
                        state = None  # a new Job of the same name
                    if state is None:
                        if self._finished(job):
                            continue
                        state = _JobState(namespace, meta["name"], meta["uid"])
                        self._jobs[key] = state
                        state.thread = threading.Thread(
                            target=self._run_job, args=(state, job), name=f"job-{meta['name']}", daemon=True
                        )
                        state.thread.start()
        with self._lock:
            for key, state in self._jobs.items():
                if key not in seen and not state.deleted:
                    state.deleted = True
                    for pod in state.pods:
                        if pod.process is not None and pod.process.poll() is None:
                            pod.process.kill()

    @staticmethod
    def _finished(job: Mapping[str, Any]) -> bool:
        conditions = (job.get("status") or {}).get("conditions") or []
        return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)

    # -- one Job -----------------------------------------------------------------------------------

    def _patch_status(self, state: _JobState, status: dict[str, Any]) -> None:
        if state.deleted:
            return
        try:
            self._batch.patch_namespaced_job_status(state.name, state.namespace, {"status": status})
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise

    def _run_job(self, state: _JobState, job: dict[str, Any]) -> None:
        try:
            self._drive(state, job)
        except Exception as exc:
            self.errors.append(f"job {state.namespace}/{state.name}: {type(exc).__name__}: {exc}")

    def _drive(self, state: _JobState, job: dict[str, Any]) -> None:
        spec = job["spec"]
        backoff_limit = spec.get("backoffLimit", 6)
        deadline = spec.get("activeDeadlineSeconds")
        policy = (spec.get("podFailurePolicy") or {}).get("rules") or []
        state.started = time.monotonic()
        failed = 0
        self._patch_status(state, {"startTime": _now()})
        while not state.deleted and not self._stop.is_set():
            pod = self._start_pod(state, job)
            if pod.stuck is not None:
                return  # like ContainerCreating forever: the Job stays active until its deadline
            self._patch_status(state, {"active": 1, "ready": 1})
            while pod.process is not None and pod.process.poll() is None:
                if deadline is not None and time.monotonic() - state.started > deadline:
                    pod.process.kill()
                    pod.process.wait()
                    self._fail(state, failed + 1, "DeadlineExceeded", "Job was active longer than specified deadline")
                    return
                if state.deleted or self._stop.is_set():
                    pod.process.kill()
                    pod.process.wait()
                    return
                time.sleep(0.05)
            assert pod.process is not None
            pod.exit_code = pod.process.returncode
            if state.deleted:
                return
            if pod.exit_code == 0:
                self._patch_status(
                    state,
                    {
                        "active": 0,
                        "ready": 0,
                        "terminating": 0,
                        "succeeded": 1,
                        "conditions": [
                            _condition(
                                "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"
                            )
                        ],
                    },
                )
                self._patch_status(
                    state,
                    {
                        "completionTime": _now(),
                        "conditions": [
                            _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
                        ],
                    },
                )
                return
            action, index = self._match(policy, pod)
            if action == "Ignore":
                self._patch_status(state, {"active": 0, "ready": 0})
                continue
            failed += 1
            if action == "FailJob":
                container = job["spec"]["template"]["spec"]["containers"][0]["name"]
                message = (
                    f"Container {container} for pod {state.namespace}/{pod.name} failed with exit code "
                    f"{pod.exit_code} matching FailJob rule at index {index}"
                )
                self._fail(state, failed, "PodFailurePolicy", message)
                return
            if failed > backoff_limit:
                self._fail(state, failed, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                return
            self._patch_status(state, {"active": 0, "ready": 0, "failed": failed})

    def _fail(self, state: _JobState, failed: int, reason: str, message: str) -> None:
        self._patch_status(
            state,
            {
                "active": 0,
                "ready": 0,
                "terminating": 0,
                "failed": failed,
                "conditions": [_condition("FailureTarget", reason, message)],
            },
        )
        self._patch_status(state, {"conditions": [_condition("Failed", reason, message)]})

    @staticmethod
    def _match(rules: list[dict[str, Any]], pod: Pod) -> tuple[str, int]:
        for index, rule in enumerate(rules):
            codes = rule.get("onExitCodes")
            if codes is not None and not pod.disrupted and pod.exit_code is not None:
                hit = pod.exit_code in codes.get("values", [])
                if hit == (codes.get("operator", "In") == "In"):
                    return rule["action"], index
            for condition in rule.get("onPodConditions") or []:
                if pod.disrupted and condition.get("type") == "DisruptionTarget":
                    return rule["action"], index
        return "Count", -1

    # -- the "pod" ---------------------------------------------------------------------------------

    def _token_kubeconfig(self, namespace: str, service_account: str) -> Path:
        key = (namespace, service_account)
        if key not in self._tokens:
            request = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            }
            answer = self._core.create_namespaced_service_account_token(service_account, namespace, request)
            path = self.workdir / namespace / f"kubeconfig-{service_account}"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tokens[key] = self._plane.kubeconfig_for(
                f"system:serviceaccount:{namespace}:{service_account}", answer.status.token, path
            )
        return self._tokens[key]

    def _volume(self, namespace: str, volume: dict[str, Any], directory: Path) -> str | None:
        """Fill ``directory`` like the kubelet fills a volume; returns why the pod is stuck, if it is."""
        directory.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            source = volume["secret"]
            optional = bool(source.get("optional", False))
            try:
                secret = self._core.read_namespaced_secret(source["secretName"], namespace)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404 and optional:
                    return None
                return (
                    f'MountVolume.SetUp failed for volume "{volume["name"]}": secret "{source["secretName"]}" not found'
                )
            data = secret.data or {}
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                if item["key"] not in data:
                    if optional:
                        continue
                    return f"couldn't find key {item['key']} in Secret {namespace}/{source['secretName']}"
                target = directory / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(data[item["key"]]))
                target.chmod(source.get("defaultMode", 0o644) & 0o777)
            return None
        if "persistentVolumeClaim" in volume:
            claim = self.workdir / namespace / "claims" / volume["persistentVolumeClaim"]["claimName"]
            claim.mkdir(parents=True, exist_ok=True)
            directory.rmdir()
            directory.symlink_to(claim, target_is_directory=True)
        return None  # emptyDir: the empty directory

    def _start_pod(self, state: _JobState, job: dict[str, Any]) -> Pod:
        template = job["spec"]["template"]["spec"]
        container = template["containers"][0]
        pod_name = f"{state.name}-{random.token_hex(3)}"
        directory = self.workdir / state.namespace / pod_name
        pod = Pod(state.namespace, state.name, pod_name, directory, directory / "log.txt")
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state.pods.append(pod)
        mounts: dict[str, Path] = {}
        for volume in template.get("volumes") or []:
            local = directory / "volumes" / volume["name"]
            problem = self._volume(state.namespace, volume, local)
            if problem is not None:
                pod.stuck = problem
                pod.log.write_text(problem + "\n")
                return pod
            mounts[volume["name"]] = local
        paths = sorted(
            ((mount["mountPath"].rstrip("/"), mounts[mount["name"]]) for mount in container.get("volumeMounts") or []),
            key=lambda pair: len(pair[0]),
            reverse=True,
        )

        def rewrite(value: str) -> str:
            for mount_path, local in paths:
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(local) + value[len(mount_path) :]
            return value

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(directory),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        for item in container.get("env") or []:
            env[item["name"]] = rewrite(str(item.get("value", "")))
        account = template.get("serviceAccountName", "default")
        try:
            env["KUBECONFIG"] = str(self._token_kubeconfig(state.namespace, account))
        except kubernetes.client.ApiException as exc:
            pod.stuck = f"cannot get a token for ServiceAccount {account}: {exc.status} {exc.reason}"
            pod.log.write_text(pod.stuck + "\n")
            return pod
        env.update(self.extra_env)
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if command and command[0] == "ml-connector":
            command[0] = str(EXECUTABLE)
        with pod.log.open("wb") as log:
            pod.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
        return pod


@contextlib.contextmanager
def running_kubelet(*args: Any, **kwargs: Any) -> Iterator[Kubelet]:
    kubelet = Kubelet(*args, **kwargs)
    with kubelet:
        yield kubelet
