"""spec.py: the resource models, their defaults and their error messages."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from ml_connector import records
from ml_connector.spec import (
    API_VERSION,
    GROUP,
    VERSION,
    Entity,
    SpecError,
    SyncConnection,
    SyncConnectionSpec,
    SyncRunSpec,
    SyncRunStatus,
    describe_errors,
    parse_connection,
    parse_duration,
    parse_run,
)


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "ml-connector.com/v1alpha1",
        "kind": "SyncConnection",
        "metadata": {"name": "acme", "namespace": "finance", "annotations": {"note": "x"}},
        "spec": {
            "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor-ionapi"}, "m3": {"company": "100"}},
            "anaplan": {
                "workspace": "FP&A",
                "model": "Actuals",
                "auth": {"method": "certificate", "credentialsSecretRef": {"name": "anaplan-cert"}},
            },
            "flows": [
                {"entity": "gl_postings", "importAction": "Load GL Actuals", "lookbackMonths": 3},
                {
                    "entity": "supplier_invoices",
                    "importAction": "Load AP",
                    "periodFrom": "2026-01",
                    "periodTo": "2026-06",
                },
            ],
            "schedule": "15 6 * * MON-FRI",
            "timeZone": "Europe/Berlin",
        },
    }


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_connection(document, "connection.yaml")
    assert str(caught.value).startswith("connection.yaml: invalid resource:")
    return caught.value.problems


def test_group_version() -> None:
    assert f"{GROUP}/{VERSION}" == API_VERSION == "ml-connector.com/v1alpha1"


def test_entities_match_the_canonical_records() -> None:
    assert get_args(Entity) == records.ENTITIES


def test_valid_connection_gets_defaults() -> None:
    connection = parse_connection(manifest())
    spec = connection.spec
    assert spec.concurrency_policy == "Forbid"
    assert spec.suspend is False
    assert spec.starting_deadline_seconds is None
    assert (spec.successful_runs_history_limit, spec.failed_runs_history_limit) == (3, 1)
    assert spec.infor.credentials_secret_ref.key == "credentials.ionapi"
    assert spec.infor.m3 is not None
    assert spec.infor.m3.cost_center_dimension == 2
    assert spec.mappings.accounts.list_name == "GL Accounts"
    assert spec.mappings.cost_centers.list_name == "Cost Centers"
    assert spec.mappings.missing_members == "Add"
    assert spec.job_template.backoff_limit == 2
    assert spec.flows[0].overlap_delta == dt.timedelta(hours=1)
    assert spec.writeback is None
    assert connection.metadata.annotations == {"note": "x"}
    assert connection.status.conditions == []


def test_snake_case_and_camel_case_are_both_accepted() -> None:
    camel = SyncConnectionSpec.model_validate(manifest()["spec"])
    snake_doc = copy.deepcopy(manifest()["spec"])
    snake_doc["time_zone"] = snake_doc.pop("timeZone")
    snake_doc["infor"]["product_line"] = snake_doc["infor"].pop("productLine")
    assert SyncConnectionSpec.model_validate(snake_doc) == camel


def test_wire_form_is_camel_case_and_round_trips() -> None:
    spec = parse_connection(manifest()).spec
    wire = spec.to_wire()
    assert wire["timeZone"] == "Europe/Berlin"
    assert wire["mappings"]["accounts"] == {"list": "GL Accounts"}
    assert "writeback" not in wire  # unset optionals are left out
    assert SyncConnectionSpec.model_validate(wire) == spec


def test_errors_name_each_field_in_camel_case() -> None:
    document = manifest()
    document["spec"]["concurrencyPolicy"] = "Sometimes"
    document["spec"]["timeZone"] = "Europe/Atlantis"
    document["spec"]["schedule"] = "0 25 * * *"
    document["spec"]["flows"][1]["periodFrom"] = "2026-13"
    document["spec"]["infor"]["credentialsSecretRef"]["name"] = "Infor_Creds"
    document["spec"]["bogus"] = 1
    problems = errors_of(document)
    assert problems == [
        "spec.infor.credentialsSecretRef.name: 'Infor_Creds' is not a valid Kubernetes name "
        "(lowercase letters, digits, '-' and '.', alphanumeric at both ends)",
        "spec.flows[1].periodFrom: '2026-13' is not a period of the form YYYY-MM",
        "spec.schedule: hour field: 25 is out of range 0-23",
        "spec.timeZone: unknown time zone 'Europe/Atlantis': use an IANA name such as 'Europe/Berlin' or 'UTC'",
        "spec.concurrencyPolicy: Input should be 'Forbid', 'Allow' or 'Replace'",
        "spec.bogus: Extra inputs are not permitted",
    ]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("infor.m3", None, "spec.infor: infor.m3 is required when productLine is M3"),
        ("flows.0.periodTo", "2026-02", "spec.flows[0]: lookbackMonths and periodFrom/periodTo are mutually exclusive"),
        ("flows.1.periodFrom", None, "spec.flows[1]: periodTo requires periodFrom"),
        ("flows.1.periodTo", "2025-12", "spec.flows[1]: periodFrom 2026-01 must not be after periodTo 2025-12"),
        ("flows.1.entity", "gl_postings", "spec: flows: entity gl_postings appears more than once"),
        ("flows.0.overlap", "1 hour", "spec.flows[0].overlap: '1 hour' is not a duration such as '90m', '1h30m'"),
        (
            "writeback",
            {"exportAction": "Budget", "target": {"syteline": {"config": "PLANT1"}}},
            "spec: writeback.target.m3 is required when infor.productLine is M3, and only then",
        ),
        (
            "writeback",
            {"exportAction": "Budget", "target": {}},
            "spec.writeback.target: writeback.target needs exactly one of m3 or syteline",
        ),
        ("audit", {}, "spec.audit: audit needs exactly one of sqlite or postgres"),
        (
            "jobTemplate",
            {"resources": {"limits": {"memory": "lots"}}},
            "spec.jobTemplate.resources.limits.memory: 'lots'",
        ),
        ("schedule", "TZ=UTC 0 2 * * *", "spec.schedule: the schedule may not set TZ= or CRON_TZ="),
    ],
)
def test_cross_field_rules(path: str, value: Any, expected: str) -> None:
    document = manifest()
    node: Any = document["spec"]
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[int(last) if isinstance(node, list) else last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    problems = errors_of(document)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_writeback_for_syteline_and_fsm() -> None:
    document = manifest()
    document["spec"]["infor"] = {
        "productLine": "SyteLine",
        "credentialsSecretRef": {"name": "infor", "key": "tenant.ionapi"},
        "syteline": {"configs": ["PLANT1", "PLANT2"]},
    }
    document["spec"]["writeback"] = {"exportAction": "Budget export", "target": {"syteline": {"config": "PLANT1"}}}
    spec = parse_connection(document).spec
    assert spec.writeback is not None
    assert spec.writeback.version == "Budget"
    assert spec.writeback.dry_run is False
    document["spec"]["infor"] = {"productLine": "FSM", "credentialsSecretRef": {"name": "infor"}}
    assert "spec: writeback is supported for infor.productLine M3 and SyteLine only" in errors_of(document)


def test_manual_only_connection_has_no_schedule() -> None:
    document = manifest()
    del document["spec"]["schedule"]
    assert parse_connection(document).spec.schedule is None


def test_kind_and_api_version_are_checked() -> None:
    document = manifest()
    document["apiVersion"] = "ml-connector.com/v2"
    assert errors_of(document) == ["apiVersion: Input should be 'ml-connector.com/v1alpha1'"]


def test_syncrun_spec_and_status() -> None:
    run = parse_run(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncRun",
            "metadata": {"name": "acme-29500000", "uid": "u-1", "generation": 1},
            "spec": {"connectionRef": {"name": "acme"}, "period": {"from": "2026-01", "to": "2026-03"}},
            "status": {"phase": "WaitingForLock", "lock": {"lease": "ml-connector-model-x", "holder": "u-0"}, "new": 1},
        }
    )
    assert run.spec.direction == "Load"
    assert run.spec.period is not None
    assert run.spec.period.from_ == "2026-01"
    assert run.spec.period.to_wire() == {"from": "2026-01", "to": "2026-03"}
    assert run.status.phase == "WaitingForLock"  # unknown status fields are ignored, not refused
    with pytest.raises(ValidationError) as caught:
        SyncRunSpec.model_validate({"connectionRef": {"name": "acme"}, "direction": "WriteBack", "flows": ["payments"]})
    assert describe_errors(caught.value) == ["flows select load flows; they cannot be set for direction WriteBack"]
    with pytest.raises(ValidationError):
        SyncRunStatus.model_validate({"phase": "Exploded"})


def test_models_are_immutable() -> None:
    connection = parse_connection(manifest())
    with pytest.raises(ValidationError):
        connection.spec.suspend = True  # type: ignore[misc]
    assert isinstance(connection, SyncConnection)


@pytest.mark.parametrize(("text", "seconds"), [("90m", 5400), ("1h30m", 5400), ("45s", 45), ("250ms", 0.25)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_refuses_other_forms() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("1.5h")
