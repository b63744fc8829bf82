"""The Argo CD health checks (Lua) give Healthy, Progressing, Degraded and Suspended for sample statuses.

Runs each ``deploy/argocd/health/<Kind>/health_test.yaml`` case the way Argo CD does: the Lua script
sees the object as the global ``obj`` and returns ``{status, message}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health"
KINDS = ("SyncConnection", "SyncRun")


def to_lua(runtime: lupa.LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def evaluate(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = to_lua(runtime, obj)
    script = (HEALTH / kind / "health.lua").read_text()
    result = runtime.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cases() -> list[Any]:
    out = []
    for kind in KINDS:
        spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
        for case in spec["tests"]:
            out.append(pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}"))
    return out


@pytest.mark.parametrize(("kind", "case"), cases())
def test_health_matches_expectation(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    assert evaluate(kind, obj) == case["healthStatus"]


def test_every_health_status_is_covered() -> None:
    seen = {case.values[1]["healthStatus"]["status"] for case in cases()}
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= seen


def test_argocd_cm_snippet_embeds_the_tested_scripts() -> None:
    snippet = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in KINDS:
        embedded = snippet["data"][f"resource.customizations.health.ml-connector.com_{kind}"]
        assert embedded == (HEALTH / kind / "health.lua").read_text(), (
            f"deploy/argocd/argocd-cm.yaml is out of date for {kind}: copy health/{kind}/health.lua into it"
        )
