"""A real test control plane: etcd + kube-apiserver on loopback, envtest style.

The binaries are built from Go modules by ``scripts/envtest.sh`` into a cache outside the repo.
Everything else is made here per test session: a CA and serving certificate (``cryptography``), a
static admin token (group ``system:masters``), a service-account signing key, free ports, temp
dirs. Authorization is RBAC, so RBAC tests are real. No kubelet, scheduler or controller-manager.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "envtest.sh"
CRD_DIR = REPO / "crds"
STARTUP_TIMEOUT = 120.0  # seconds; a 2-core machine shared with other jobs can be slow


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says why and what to do."""


def bin_dir() -> Path:
    """Where scripts/envtest.sh puts (or put) the binaries; ``ML_CONNECTOR_ENVTEST_BIN`` overrides."""
    override = os.environ.get("ML_CONNECTOR_ENVTEST_BIN")
    if override:
        return Path(override)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True, timeout=30
    )
    return Path(out.stdout.strip())


def find_binaries() -> tuple[Path, Path]:
    """``(etcd, kube-apiserver)``, or ControlPlaneError naming the build script."""
    directory = bin_dir()
    etcd, apiserver = directory / "etcd", directory / "kube-apiserver"
    missing = [path.name for path in (etcd, apiserver) if not os.access(path, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"{' and '.join(missing)} not found in {directory}: build the test control plane with "
            f"`bash scripts/envtest.sh` (Go modules, a few minutes once; cached outside the repo)"
        )
    return etcd, apiserver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- certificates ---------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usages: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    sa_public: Path
    sa_private: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ml-connector-envtest-ca")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    serving_key = _key()
    serving = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key,
        ca_name,
        ca_key,
        sans=[
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ],
        usages=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
    )
    sa_key = _key()
    pki = Pki(
        ca_file=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_public=directory / "sa.pub",
        sa_private=directory / "sa.key",
    )
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.sa_private.write_bytes(_pem_key(sa_key))
    pki.sa_public.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for path in (pki.serving_key, pki.sa_private):
        path.chmod(0o600)
    return pki


# --- processes ------------------------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)


def _start(name: str, argv: list[str], log: Path) -> _Process:
    handle = log.open("wb")
    try:
        popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        handle.close()
    return _Process(name, popen, log)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver. ``kubeconfig`` authenticates as an admin (system:masters)."""

    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    workdir: Path
    processes: list[_Process] = field(default_factory=list)

    def kubeconfig_for(self, user: str, token: str, path: Path) -> Path:
        """A kubeconfig with a bearer token (e.g. a ServiceAccount token from the TokenRequest API)."""
        path.write_text(yaml.safe_dump(_kubeconfig(self.url, self.ca_file, user, token)))
        return path

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def _kubeconfig(url: str, ca_file: Path, user: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": url, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "envtest", "user": user, "namespace": "default"}}],
        "current-context": user,
    }


def _wait_ready(plane: ControlPlane, apiserver: _Process, etcd: _Process) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    with httpx.Client(verify=context, headers={"Authorization": f"Bearer {plane.token}"}) as client:
        while time.monotonic() < deadline:
            for process in (etcd, apiserver):
                if process.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{process.name} exited with {process.popen.returncode} during startup:\n{process.tail()}"
                    )
            try:
                response = client.get(f"{plane.url}/readyz", timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code}: {response.text[-500:]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
    raise ControlPlaneError(
        f"kube-apiserver not ready after {STARTUP_TIMEOUT:.0f}s ({last}):\n{apiserver.tail()}\netcd:\n{etcd.tail(10)}"
    )


def start_control_plane(workdir: Path) -> ControlPlane:
    """Start etcd and kube-apiserver under ``workdir``; returns once ``/readyz`` answers 200."""
    etcd_bin, apiserver_bin = find_binaries()
    pki = make_pki(workdir / "pki")
    token = secrets.token_hex(24)
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{token},envtest-admin,envtest-admin,"system:masters"\n')
    tokens.chmod(0o600)
    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd = _start(
        "etcd",
        [
            str(etcd_bin),
            "--name=envtest",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=envtest={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        workdir / "etcd.log",
    )
    url = f"https://127.0.0.1:{secure_port}"
    plane = ControlPlane(
        url=url, token=token, ca_file=pki.ca_file, kubeconfig=workdir / "kubeconfig", workdir=workdir, processes=[etcd]
    )
    try:
        apiserver = _start(
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_file}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
            workdir / "kube-apiserver.log",
        )
        plane.processes.append(apiserver)
        plane.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(url, pki.ca_file, "envtest-admin", token)))
        _wait_ready(plane, apiserver, etcd)
    except BaseException:
        plane.stop()
        raise
    return plane


@contextlib.contextmanager
def running_control_plane(workdir: Path) -> Iterator[ControlPlane]:
    plane = start_control_plane(workdir)
    try:
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)
