"""The CRDs in crds/ are exactly what spec.py generates, and they are structural."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_connector.kube.crds import rendered_crds

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    for name, text in rendered_crds().items():
        path = CRD_DIR / name
        assert path.is_file(), f"{path} is missing: run `ml-connector crds`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date with spec.py: run `ml-connector crds`"
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(rendered_crds()), "stray files in crds/"


def nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield path, schema
        for key, value in schema.get("properties", {}).items():
            yield from nodes(value, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            yield from nodes(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            yield from nodes(schema["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("name", sorted(rendered_crds()))
def test_schemas_are_structural(name: str) -> None:
    crd = yaml.safe_load(rendered_crds()[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in nodes(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & set(node), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        if node.get("type") == "object" and path.count(".") > 1:
            assert "properties" in node or "additionalProperties" in node, f"{path} is an untyped object"
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_defaults_and_rules_reach_the_schema() -> None:
    crd = yaml.safe_load(rendered_crds()["ml-connector.com_syncconnections.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["concurrencyPolicy"]["default"] == "Forbid"
    assert spec["properties"]["concurrencyPolicy"]["enum"] == ["Forbid", "Allow", "Replace"]
    assert spec["properties"]["mappings"]["default"] == {}
    assert spec["properties"]["jobTemplate"]["default"] == {}
    assert spec["properties"]["flows"]["x-kubernetes-list-map-keys"] == ["entity"]
    assert "writeback" not in spec["required"]
    assert any("productLine" in rule["rule"] for rule in spec["x-kubernetes-validations"])
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    run = yaml.safe_load(rendered_crds()["ml-connector.com_syncruns.yaml"])
    run_spec = run["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"rule": "self == oldSelf"}.items() <= run_spec["x-kubernetes-validations"][0].items()
