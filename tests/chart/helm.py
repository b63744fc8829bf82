"""Run the Helm binary built by ``scripts/helm.sh`` (from its Go module, cached outside the repo)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ml-connector"


def helm_binary() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "helm.sh"), "--print-bin"], capture_output=True, text=True, check=True
    )
    path = Path(out.stdout.strip())
    if not path.exists():
        raise AssertionError(f"helm is not built: run `bash scripts/helm.sh` (expected {path})")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=check, timeout=120)


def render(*set_values: str, namespace: str = "finance", release: str = "mlc") -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in set_values:
        args += ["--set", value]
    result = helm(*args, check=False)
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


class RenderError(Exception):
    pass
