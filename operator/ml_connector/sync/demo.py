"""The demo's files and report, independent of the emulators (``ml-connector demo`` starts those).

:func:`write_demo_files` lays out what a real installation has: the SyncConnection manifest
(``connection.yaml``, the very YAML applied to a cluster) and a secrets directory as Kubernetes mounts
Secrets (``secrets/<secret name>/<key>``, mode 0600), pointed at the emulators. :func:`demo_report` renders
the load and write-back results as the demo prints them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ml_connector.sync.report import render
from ml_connector.sync.result import RunResult

#: Secret names (not secrets)
INFOR_SECRET = "infor-credentials"  # noqa: S105
ANAPLAN_SECRET = "anaplan-credentials"  # noqa: S105
DemoProductLine = Literal["M3", "SyteLine"]


@dataclass(frozen=True)
class DemoFiles:
    directory: Path
    connection_file: Path
    secrets_dir: Path
    audit_path: Path


@dataclass(frozen=True)
class DemoTarget:
    """Where the demo's emulators are and who logs in (plain values, read from the running sandbox)."""

    product_line: DemoProductLine
    ionapi_file: Path
    tenant: str
    company: str
    sites: tuple[str, ...]
    anaplan_url: str
    anaplan_user: str
    anaplan_password: str
    workspace: str
    model: str
    budget_division: str


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def connection_document(target: DemoTarget, *, name: str, audit_path: Path) -> dict[str, Any]:
    """The SyncConnection of the demo: every flow of the default model, alignment, write-back, local audit."""
    infor: dict[str, Any] = {
        "productLine": target.product_line,
        "credentialsSecretRef": {"name": INFOR_SECRET, "key": "credentials.ionapi"},
        "rateLimit": {"requestsPerSecond": 0},
        "pageSize": 2000,
    }
    if target.product_line == "M3":
        infor["m3"] = {"company": target.company}
        writeback_target: dict[str, Any] = {
            "m3": {"division": target.budget_division, "budgetNumber": "900", "budgetVersion": "ANP"}
        }
    else:
        infor["syteline"] = {"configs": [f"{target.tenant}_{site}" for site in target.sites]}
        writeback_target = {"syteline": {"config": f"{target.tenant}_{target.budget_division}"}}
    return {
        "apiVersion": "ml-connector.com/v1alpha1",
        "kind": "SyncConnection",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "infor": infor,
            "anaplan": {
                "workspace": target.workspace,
                "model": target.model,
                "auth": {"method": "basic", "credentialsSecretRef": {"name": ANAPLAN_SECRET}},
                "authUrl": target.anaplan_url,
                "apiUrl": target.anaplan_url.rstrip("/") + "/2/0",
            },
            "flows": [
                {"entity": "supplier_invoices", "importAction": "Load Supplier Invoices"},
                {"entity": "payments", "importAction": "Load Payments"},
                {"entity": "gl_postings", "importAction": "Load GL Actuals"},
            ],
            "mappings": {
                "accounts": {"list": "GL Accounts", "importAction": "Load GL Accounts"},
                "costCenters": {"list": "Cost Centers", "importAction": "Load Cost Centers"},
                "missingMembers": "Add",
            },
            "writeback": {"exportAction": "Approved Budget", "version": "Budget", "target": writeback_target},
            "audit": {"sqlite": {"path": str(audit_path.resolve())}},
        },
    }


def write_demo_files(directory: Path, target: DemoTarget, *, name: str, audit_path: Path) -> DemoFiles:
    """``connection.yaml`` and ``secrets/`` in ``directory`` (created), pointed at ``target``."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets = directory / "secrets"
    _write_secret(secrets / INFOR_SECRET / "credentials.ionapi", target.ionapi_file.read_bytes())
    _write_secret(secrets / ANAPLAN_SECRET / "username", target.anaplan_user.encode())
    _write_secret(secrets / ANAPLAN_SECRET / "password", target.anaplan_password.encode())
    connection = directory / "connection.yaml"
    document = connection_document(target, name=name, audit_path=audit_path)
    connection.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return DemoFiles(directory, connection, secrets, audit_path)


def remove_demo_files(files: DemoFiles) -> None:
    shutil.rmtree(files.directory, ignore_errors=True)


def demo_report(
    load: RunResult,
    writeback: RunResult,
    files: DemoFiles,
    *,
    headline: str,
    injected: Sequence[str] = (),
    example_key: str | None = None,
    kept: bool = False,
) -> str:
    """What the demo prints: the setup, both runs' reports, where the audit is and what to ask it."""
    rule = "=" * 100
    lines = [rule, headline, rule]
    if injected:
        lines.append("Deliberately broken source records (the run must reject them with a reason, and load the rest):")
        lines += [f"  - {item}" for item in injected]
    lines += ["", "-" * 100, "1. Alignment and load (Infor -> Anaplan)", "-" * 100, render(load)]
    lines.append(
        "(GL postings are double-entry: every journal balances, so their source total is 0.00; the table per account"
        " and period is what to look at.)\n"
    )
    lines += ["-" * 100, "2. Write-back (Anaplan approved budget -> Infor)", "-" * 100, render(writeback)]
    audit = files.audit_path
    lines += ["-" * 100, "3. Audit trail", "-" * 100, f"Audit database: {audit}"]
    lines.append("Ask it, for example:")
    lines.append(
        f"  ml-connector audit --audit {audit} --run {load.run_id} --failed     # which records of the load failed"
    )
    if example_key:
        lines.append(f"  ml-connector audit --audit {audit} --key {example_key}     # what happened to this record")
    lines.append(f"  ml-connector audit --audit {audit} --runs                          # every run")
    if kept:
        lines.append(f"Connection manifest: {files.connection_file} (secrets under {files.secrets_dir})")
    rejected = sum(f.rejected for f in load.flows)
    lines += [
        "",
        f"Result: {load.status} load and {writeback.status} write-back. {rejected} record(s) were rejected by design"
        " and traced to their source records; everything else loaded and reconciles. Exit code 0.",
    ]
    return "\n".join(lines) + "\n"
