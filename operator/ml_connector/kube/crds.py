"""CustomResourceDefinitions generated from the pydantic models in :mod:`ml_connector.spec`.

Pydantic's JSON schema is turned into a Kubernetes *structural* OpenAPI v3 schema: ``$ref`` inlined,
``anyOf [X, null]`` collapsed to ``X`` (an absent optional field; a ``null`` sent by a client is pruned
by the API server, which is what ``None`` means in the models, so no field is declared ``nullable``),
``int | str`` as ``x-kubernetes-int-or-string``, no ``title``/``additionalProperties: false`` (the
server prunes and, with field validation, refuses unknown fields), ``default: {}`` on nested objects
built by a default factory so the server fills in their own defaults. CEL rules and list types come
from the models' ``json_schema_extra``.

``ml-connector crds`` writes the YAML into ``crds/``; ``tests/unit/test_crds_drift.py`` fails when the
files differ from what the models generate.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ml_connector.spec import (
    GROUP,
    VERSION,
    SyncConnectionSpec,
    SyncConnectionStatus,
    SyncRunSpec,
    SyncRunStatus,
)

__all__ = ["CRDS", "CrdDefinition", "crd_file_name", "crd_manifest", "drifted_files", "render_crd", "write_crds"]

HEADER = "# Generated from operator/ml_connector/spec.py by `ml-connector crds`. Do not edit: edit spec.py and rerun.\n"
CATEGORIES = ["ml-connector"]

_READY = '.status.conditions[?(@.type=="Ready")]'


@dataclass(frozen=True)
class CrdDefinition:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    printer_columns: tuple[Mapping[str, Any], ...]


def _column(
    name: str, json_path: str, type_: str = "string", description: str = "", priority: int = 0
) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if description:
        column["description"] = description
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

CRDS: tuple[CrdDefinition, ...] = (
    CrdDefinition(
        kind="SyncConnection",
        plural="syncconnections",
        singular="syncconnection",
        short_names=("syncconn",),
        spec_model=SyncConnectionSpec,
        status_model=SyncConnectionStatus,
        description="A connection from an Infor CloudSuite tenant to an Anaplan model, run on a schedule.",
        printer_columns=(
            _column("Ready", f"{_READY}.status", description="Ready condition"),
            _column("Status", f"{_READY}.message", description="Ready condition message"),
            _column("Schedule", ".spec.schedule"),
            _column("Suspended", ".spec.suspend", "boolean"),
            _column("Last Success", ".status.lastSuccessfulRun.time", "date", "When the last successful run finished"),
            _AGE,
        ),
    ),
    CrdDefinition(
        kind="SyncRun",
        plural="syncruns",
        singular="syncrun",
        short_names=("srun",),
        spec_model=SyncRunSpec,
        status_model=SyncRunStatus,
        description="One run of a SyncConnection: a worker Job that loads actuals or writes budgets back.",
        printer_columns=(
            _column("Connection", ".spec.connectionRef.name"),
            _column("Direction", ".spec.direction"),
            _column("Phase", ".status.phase"),
            _column("Loaded", ".status.counts.loaded", "integer", "Records accepted by the target"),
            _column("Rejected", ".status.counts.rejected", "integer", "Records refused by the target"),
            _AGE,
        ),
    ),
)


class SchemaError(ValueError):
    """A model whose JSON schema has no structural equivalent (a bug in spec.py)."""


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return dict(node)
    name = node["$ref"].rsplit("/", 1)[-1]
    merged: dict[str, Any] = copy.deepcopy(dict(defs[name]))
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return merged


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    if "anyOf" in node:
        branches = [_resolve(branch, defs) for branch in node.pop("anyOf") if branch.get("type") != "null"]
        types = sorted(branch.get("type", "") for branch in branches)
        if len(branches) == 1:
            node = {**branches[0], **node}
        elif types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        else:
            raise SchemaError(f"{where}: a union of {types} has no structural schema")
        if node.get("default", ...) is None:
            del node["default"]
    node.pop("title", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "description" in node:
        node["description"] = node["description"].replace("``", "`")
    if "properties" in node:
        required = set(node.get("required", ()))
        properties: dict[str, Any] = {}
        for name, child in node["properties"].items():
            converted = _structural(child, defs, f"{where}.{name}")
            if (
                name not in required
                and "default" not in converted
                and converted.get("type") == "object"
                and "properties" in converted
                and not _was_optional(child)
            ):
                converted["default"] = {}  # built by a default factory: let the server fill in its fields
            properties[name] = converted
        node["properties"] = properties
    if isinstance(node.get("additionalProperties"), Mapping):
        node["additionalProperties"] = _structural(node["additionalProperties"], defs, f"{where}.*")
    if "items" in node:
        node["items"] = _structural(node["items"], defs, f"{where}[]")
    return _ordered(node)


_KEY_ORDER = [
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "x-kubernetes-validations",
]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Keys in a fixed, readable order (description first, nested schemas and rules last)."""
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    return {key: node[key] for key in sorted(node, key=lambda key: (rank.get(key, len(rank)), key))}


def _was_optional(node: Mapping[str, Any]) -> bool:
    return any(branch.get("type") == "null" for branch in node.get("anyOf", ()))


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase field names)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _structural(schema, defs, model.__name__)


def crd_manifest(definition: CrdDefinition) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(definition.spec_model)
    status_schema = openapi_schema(definition.status_model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{definition.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "ml-connector", "app.kubernetes.io/part-of": "ml-connector"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": definition.kind,
                "listKind": f"{definition.kind}List",
                "plural": definition.plural,
                "singular": definition.singular,
                "shortNames": list(definition.short_names),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(column) for column in definition.printer_columns],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": definition.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "API version: ml-connector.com/v1alpha1.",
                                },
                                "kind": {"type": "string", "description": f"Kind: {definition.kind}."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_file_name(manifest: Mapping[str, Any]) -> str:
    """``ml-connector.com_syncconnections.yaml`` (the controller-gen naming)."""
    return f"{manifest['spec']['group']}_{manifest['spec']['names']['plural']}.yaml"


def render_crd(manifest: Mapping[str, Any]) -> str:
    """Deterministic YAML text of a CRD."""
    return HEADER + yaml.safe_dump(
        dict(manifest), sort_keys=False, default_flow_style=False, width=120, allow_unicode=True
    )


def rendered_crds() -> dict[str, str]:
    """File name -> YAML text for every CRD."""
    manifests = [crd_manifest(definition) for definition in CRDS]
    return {crd_file_name(manifest): render_crd(manifest) for manifest in manifests}


def write_crds(output_dir: Path) -> list[Path]:
    """Write every CRD into ``output_dir``; returns the files written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_crds().items():
        path = output_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drifted_files(output_dir: Path) -> list[str]:
    """Names of the CRD files in ``output_dir`` that are missing or differ from the models."""
    drifted = []
    for name, text in rendered_crds().items():
        path = output_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            drifted.append(name)
    return drifted
