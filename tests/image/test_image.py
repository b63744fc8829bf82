"""The container image, built for real from the Dockerfile and run.

``scripts/image.sh`` builds it with buildah from Debian's packages (vfs storage, chroot isolation; no Docker
engine, no registry) on a base made with debootstrap, and does nothing when the image's inputs did not change.
The tests run programs inside it with ``buildah run`` and look at its files through ``buildah mount``: the
version, the numeric non-root user, the entrypoint, the OCI labels, nothing of the build left in the final stage,
and the worker's self-check. Needs root, like the script.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image.sh"
BUILD_TIMEOUT = 1800  # a cold cache (debootstrap, then the build) takes about two minutes here
RUN_TIMEOUT = 120
NON_ROOT = "65532"

BUILD_TOOLS = (
    "cc",
    "c++",
    "gcc*",
    "g++*",
    "clang*",
    "cpp",
    "*-linux-gnu-gcc*",
    "make",
    "ld",
    "ld.bfd",
    "ld.gold",
    "as",
)
INSTALLERS = ("pip", "pip3*", "easy_install*", "wheel")
BUILD_PACKAGES = (
    "gcc",
    "gcc-[0-9]*",
    "g++",
    "g++-[0-9]*",
    "cpp",
    "cpp-[0-9]*",
    "clang*",
    "make",
    "binutils*",
    "build-essential",
    "libc6-dev",
    "*python3*-dev",
    "python3-pip",
)


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def script(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Image:
    ref: str
    env: dict[str, str]

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["buildah", *args], capture_output=True, text=True, env=self.env, timeout=RUN_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def inspect(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.buildah("inspect", "--type", "image", self.ref).stdout)
        return data

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect()["OCIv1"]["config"]
        return config

    @property
    def image_id(self) -> str:
        return self.buildah("images", "--no-trunc", "--format", "{{.ID}}", self.ref).stdout.strip()


@dataclass(frozen=True)
class Container:
    image: Image
    name: str
    rootfs: Path  # the container's files, seen from the host (buildah mount)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container as the image's user, with chroot isolation."""
        return self.image.buildah("run", "--isolation", "chroot", self.name, "--", *command, check=check)


@pytest.fixture(scope="module")
def image() -> Image:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: the image test builds the image with buildah on a debootstrap "
            "base; run `bash scripts/system-deps.sh` (installs the Debian packages buildah and debootstrap)"
        )
    result = script(timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f"scripts/image.sh exited {result.returncode}:\n{result.stderr[-6000:]}")
    ref = result.stdout.strip().splitlines()[-1]
    env_lines = script("--print-env").stdout.splitlines()
    env = dict(os.environ) | dict(line.split("=", 1) for line in env_lines)
    return Image(ref=ref, env=env)


@pytest.fixture(scope="module")
def container(image: Image) -> Iterator[Container]:
    prefix = "ml-connector-image-test-"
    names = image.buildah("containers", "--format", "{{.ContainerName}}").stdout.split()
    for stale in names:  # left by a test process that was killed: each holds a full copy of the image (vfs)
        if stale.startswith(prefix) and not Path("/proc", stale.removeprefix(prefix)).exists():
            image.buildah("rm", stale, check=False)
    name = f"{prefix}{os.getpid()}"
    image.buildah("from", "--pull=never", "--name", name, image.ref)
    try:
        rootfs = Path(image.buildah("mount", name).stdout.strip())
        yield Container(image=image, name=name, rootfs=rootfs)
    finally:
        image.buildah("umount", name, check=False)
        image.buildah("rm", name, check=False)


def test_image_reference_names_the_package_version(image: Image) -> None:
    assert image.ref == f"localhost/ml-connector:{project_version()}"


def test_storage_is_outside_the_repository(image: Image) -> None:
    storage_conf = Path(image.env["CONTAINERS_STORAGE_CONF"]).read_text()
    graphroot = next(line for line in storage_conf.splitlines() if line.startswith("graphroot"))
    path = Path(graphroot.split("=", 1)[1].strip().strip('"'))
    assert path.is_absolute()
    assert not path.is_relative_to(ROOT), f"image storage {path} is inside the repository"
    assert image.env["STORAGE_DRIVER"] == "vfs"


def test_entrypoint_is_ml_connector_for_operator_and_worker(image: Image) -> None:
    config = image.config
    assert config["Entrypoint"] == ["ml-connector"]
    assert config["Cmd"] == ["operator"]
    assert config["WorkingDir"] == "/tmp"


def test_entrypoint_prints_the_package_version(image: Image, container: Container) -> None:
    result = container.run(*image.config["Entrypoint"], "--version")
    assert result.stdout == f"ml-connector, version {project_version()}\n"


def test_runs_as_numeric_non_root_user(image: Image, container: Container) -> None:
    assert image.config["User"] == f"{NON_ROOT}:{NON_ROOT}"
    ids = container.run("python3", "-c", "import os; print(os.getuid(), os.geteuid(), os.getgid(), os.getegid())")
    assert ids.stdout.split() == [NON_ROOT] * 4


def test_oci_labels(image: Image) -> None:
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.title"] == "ml-connector"
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.description"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    expected_revision = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert labels["org.opencontainers.image.revision"] == expected_revision


def test_final_stage_has_no_compilers_or_installers(image: Image, container: Container) -> None:
    path = next(e.split("=", 1)[1] for e in image.config["Env"] if e.startswith("PATH="))
    found = []
    for directory in path.split(":"):
        host_dir = container.rootfs / directory.lstrip("/")
        if host_dir.is_dir():
            found += [
                f"{directory}/{entry.name}"
                for entry in host_dir.iterdir()
                if any(fnmatch.fnmatch(entry.name, pattern) for pattern in BUILD_TOOLS + INSTALLERS)
            ]
    assert found == [], f"build tools or installers on the image's PATH: {found}"

    status = (container.rootfs / "var/lib/dpkg/status").read_text()
    installed = [
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    ]
    assert "python3" in installed  # the check reads a real package database
    # gcc-12-base and the like hold only the copyright of the GCC runtime libraries (libgcc-s1 needs it).
    build_packages = [
        p
        for p in installed
        if any(fnmatch.fnmatch(p, pattern) for pattern in BUILD_PACKAGES) and not p.endswith("-base")
    ]
    assert build_packages == [], f"build packages installed in the final stage: {build_packages}"

    site_packages = list((container.rootfs / "opt/ml-connector/lib").glob("python3*/site-packages"))
    assert len(site_packages) == 1
    dists = sorted(d.name for d in site_packages[0].glob("*.dist-info"))
    assert any(d.startswith("ml_connector-") for d in dists)
    leftovers = [d for d in dists if d.split("-", 1)[0].lower() in {"pip", "setuptools", "wheel"}]
    assert leftovers == [], f"installers left in the virtualenv: {leftovers}"

    # Neither the virtualenv's interpreter nor the base interpreter it links to can import an installer.
    probe = (
        "import importlib.util, subprocess, sys\n"
        "names = ('pip', 'setuptools', 'wheel')\n"
        "print(*[n for n in names if importlib.util.find_spec(n)], sep=',')\n"
        "code = 'import importlib.util; print(*[n for n in %r if importlib.util.find_spec(n)], sep=\",\")' % (names,)\n"
        "print(subprocess.run([sys._base_executable, '-c', code], capture_output=True, text=True, check=True).stdout,"
        " end='')\n"
    )
    assert container.run("python3", "-c", probe).stdout.splitlines() == ["", ""]


def test_nothing_of_the_build_is_left(container: Container) -> None:
    venv = container.rootfs / "opt/ml-connector"
    assert (venv / "bin/ml-connector").is_file()
    bytecode = [str(p.relative_to(venv)) for p in venv.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    assert bytecode == [], f"bytecode from the build in the final stage: {bytecode[:10]}"
    assert not (container.rootfs / "src").exists(), "the build stage's sources are in the final stage"
    apt_lists = [p.name for p in (container.rootfs / "var/lib/apt/lists").rglob("*") if p.is_file()]
    assert [name for name in apt_lists if name != "lock"] == [], f"apt lists in the final stage: {apt_lists}"
    archives = list((container.rootfs / "var/cache/apt/archives").glob("*.deb"))
    assert archives == [], f"package archives in the final stage: {archives}"
    assert not (container.rootfs / "root/.cache").exists()
    assert sorted(p.name for p in (container.rootfs / "tmp").iterdir()) == []


def test_worker_self_check(container: Container) -> None:
    result = container.run("ml-connector", "worker", "--self-check", check=False)
    assert result.returncode == 0, f"worker self-check failed:\n{result.stdout}\n{result.stderr}"
    assert f"ml-connector {project_version()}" in result.stdout
    assert "problem:" not in result.stderr


def test_postgres_driver_is_installed(container: Container) -> None:
    impl = container.run("python3", "-c", "import psycopg; print(psycopg.pq.__impl__)")
    assert impl.stdout == "binary\n"


def test_script_is_idempotent(image: Image) -> None:
    # A run brings the image up to date: it builds again only when the inputs changed since the last build (in a
    # checkout that others are editing, they may have), so a few runs in a row must reach "up to date"; from
    # then on a run with the same inputs does nothing and leaves the very same image.
    for _ in range(3):
        run = script(timeout=BUILD_TIMEOUT)
        assert run.returncode == 0, run.stderr[-4000:]
        if f"{image.ref} is up to date" in run.stderr:
            break
    else:
        pytest.fail("scripts/image.sh built the image again on 3 runs in a row: is its inputs digest stable?")
    before = image.image_id
    again = script(timeout=BUILD_TIMEOUT)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.strip().splitlines()[-1] == image.ref
    assert f"{image.ref} is up to date" in again.stderr, again.stderr[-2000:]
    assert image.image_id == before
