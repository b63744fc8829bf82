"""Pydantic models of the SyncConnection / SyncRun custom resources: the single source of truth.

The same models validate a local ``connection.yaml`` for the CLI (it is the very manifest a user
applies to the cluster: ``apiVersion``, ``kind``, ``metadata``, ``spec``) and generate the CRDs in
``crds/`` (:mod:`ml_connector.kube.crds`, ``ml-connector crds``). Field names are snake_case in
Python and camelCase on the wire (either is accepted on input); the attribute docstrings become the
CRD field descriptions (``kubectl explain``).

Cross-field rules are written twice on purpose: as pydantic validators (for the CLI) and as CEL
``x-kubernetes-validations`` (for the API server), side by side on the model they concern; the unit
tests check that both agree. Schema-only hints for the CRD (patterns, list types) ride along in
``json_schema_extra``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeAlias

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ml_connector.cron import CronError, load_zone, parse_cron
from ml_connector.records import Entity

GROUP = "ml-connector.com"
VERSION = "v1alpha1"
API_VERSION: Final = "ml-connector.com/v1alpha1"
#: Annotation on a SyncConnection that requests a manual run; its value is an opaque token (a time).
REQUESTED_AT_ANNOTATION = f"{GROUP}/requested-at"

# --------------------------------------------------------------------------------------------------
# Constrained strings: a clear error from pydantic, and the same pattern in the CRD.


@dataclass(frozen=True)
class _SchemaHints:
    """Extra JSON-schema keys for an annotated type (pattern, maxLength, ...); hashable, as typing needs."""

    hints: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **hints: Any) -> _SchemaHints:
        return cls(tuple(hints.items()))

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.hints)
        return schema


def _matching(pattern: str, max_length: int, what: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"{value!r} is longer than {max_length} characters")
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SECRET_KEY = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - the pattern of a Secret's key names
_PERIOD = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_URL = r"^https?://[^\s/?#]+[^\s]*$"
_DURATION = r"^([0-9]+(ms|s|m|h))+$"
_SCHEDULE_SHAPE = r"^\s*(@[a-zA-Z]+|[^\s]+(\s+[^\s]+){4})\s*$"
_QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"

ResourceName = Annotated[
    str,
    _matching(
        _SUBDOMAIN, 253, "a valid Kubernetes name (lowercase letters, digits, '-' and '.', alphanumeric at both ends)"
    ),
    _SchemaHints.of(pattern=_SUBDOMAIN, maxLength=253, minLength=1),
]
SecretKey = Annotated[
    str,
    _matching(_SECRET_KEY, 253, "a valid Secret key (letters, digits, '-', '_' and '.')"),
    _SchemaHints.of(pattern=_SECRET_KEY, maxLength=253, minLength=1),
]
Period = Annotated[
    str,
    _matching(_PERIOD, 7, "a period of the form YYYY-MM"),
    _SchemaHints.of(pattern=_PERIOD, maxLength=7),
]
Url = Annotated[
    str,
    _matching(_URL, 2048, "an http(s) URL"),
    _SchemaHints.of(pattern=_URL, maxLength=2048),
]
Name = Annotated[str, Field(min_length=1, max_length=256)]
"""A name as Anaplan or Infor shows it (an action, a list, a Mongoose config)."""


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_check_duration), _SchemaHints.of(pattern=_DURATION, maxLength=64)]
"""A duration such as ``90m``, ``1h30m`` or ``45s`` (units ms, s, m, h)."""

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> dt.timedelta:
    """``1h30m`` -> 90 minutes; raises ValueError with the accepted form."""
    if not re.fullmatch(_DURATION, text):
        raise ValueError(f"{text!r} is not a duration such as '90m', '1h30m' or '45s' (units ms, s, m, h)")
    return dt.timedelta(seconds=sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text)))


def _check_schedule(value: str) -> str:
    try:
        parse_cron(value)
    except CronError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_zone(value: str) -> str:
    try:
        load_zone(value)
    except CronError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_quantity(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(_QUANTITY, value):
        return value
    raise ValueError(f"{value!r} is not a Kubernetes quantity such as '500m', '2' or '256Mi'")


Schedule = Annotated[str, AfterValidator(_check_schedule), _SchemaHints.of(pattern=_SCHEDULE_SHAPE, maxLength=256)]
TimeZone = Annotated[
    str,
    AfterValidator(_check_zone),
    _SchemaHints.of(
        minLength=1,
        maxLength=64,
        # The API server embeds the IANA database; an unknown zone makes getHours() fail, refusing the object.
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "self == 'UTC' || timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                    "message": "timeZone must be an IANA time zone name such as Europe/Berlin or UTC",
                    "reason": "FieldValueInvalid",
                }
            ]
        },
    ),
]
Quantity = Annotated[int | str, PlainValidator(_check_quantity, json_schema_input_type=int | str)]


ProductLine: TypeAlias = Literal["M3", "SyteLine", "FSM", "LN"]
ConcurrencyPolicy: TypeAlias = Literal["Forbid", "Allow", "Replace"]
Direction: TypeAlias = Literal["Load", "WriteBack"]
RunPhase: TypeAlias = Literal["Pending", "WaitingForLock", "Running", "Succeeded", "Failed"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


def _cel(rule: str, message: str, field_path: str | None = None, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message, "reason": reason}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _k8s(*rules: dict[str, str], **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = dict(extra)
    if rules:
        schema["x-kubernetes-validations"] = list(rules)
    return schema


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused, immutable values."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON form as the API server stores it (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _StatusWire(_Wire):
    """Status is written by the operator; fields from a newer operator are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------------------------------
# SyncConnection spec


class SecretKeyRef(_Wire):
    """A key of a Secret in the same namespace, mounted into the worker as a read-only file."""

    name: ResourceName
    """Name of the Secret."""
    key: SecretKey
    """Key within the Secret."""


class InforCredentialsRef(SecretKeyRef):
    """The Secret holding the tenant's ``.ionapi`` file (downloaded from Infor ION API)."""

    key: SecretKey = "credentials.ionapi"
    """Key within the Secret holding the ``.ionapi`` JSON."""


class SecretRef(_Wire):
    """A whole Secret in the same namespace, mounted into the worker as read-only files."""

    name: ResourceName
    """Name of the Secret."""


class RateLimit(_Wire):
    """Client-side request rate towards the ION API Gateway (one bucket per tenant)."""

    requests_per_second: float = Field(default=10.0, ge=0)
    """Sustained requests per second; 0 disables limiting."""
    burst: int = Field(default=10, ge=1, le=10_000)
    """Requests allowed in a burst above the sustained rate."""


class M3Settings(_Wire):
    """Where to read in M3."""

    company: str = Field(pattern=r"^[0-9]{1,3}$")
    """M3 company (CONO), e.g. ``100``."""
    divisions: list[Annotated[str, Field(min_length=1, max_length=3)]] = Field(
        default_factory=list, max_length=100, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Divisions (DIVI) to read; empty means every division of the company."""
    cost_center_dimension: int = Field(default=2, ge=1, le=7)
    """Accounting dimension (AIT1..AIT7) that carries the cost center."""


class SyteLineSettings(_Wire):
    """Where to read in SyteLine (CloudSuite Industrial)."""

    configs: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=50, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Mongoose configuration names (one per site), sent as ``X-Infor-MongooseConfig``."""


class FSMSettings(_Wire):
    """Where to read in FSM (CloudSuite Financials & Supply Management)."""

    finance_enterprise_group: str | None = Field(default=None, min_length=1, max_length=64)
    """Finance enterprise group to read; all groups the service account sees when unset."""


class LNSettings(_Wire):
    """Where to read in LN."""

    company: int | None = Field(default=None, ge=0, le=999_999)
    """LN company number (``X-Infor-LnCompany``); the service user's default company when unset."""


class InforSpec(_Wire):
    """The Infor CloudSuite tenant the actuals come from (and budgets go back to)."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel("self.productLine != 'M3' || has(self.m3)", "infor.m3 is required when productLine is M3", ".m3"),
            _cel(
                "self.productLine != 'SyteLine' || has(self.syteline)",
                "infor.syteline is required when productLine is SyteLine",
                ".syteline",
            ),
        )
    )

    product_line: ProductLine
    """Infor product line: M3, SyteLine, FSM or LN."""
    credentials_secret_ref: InforCredentialsRef
    """Secret with the ``.ionapi`` credentials file."""
    tenant_url: Url | None = None
    """Overrides the API base URL of the ``.ionapi`` file (``iu`` + ``ti``)."""
    token_endpoint: Url | None = None
    """Overrides the OAuth token endpoint of the ``.ionapi`` file (``pu`` + ``ot``)."""
    m3: M3Settings | None = None
    """M3 company and divisions (required for M3)."""
    syteline: SyteLineSettings | None = None
    """SyteLine sites (required for SyteLine)."""
    fsm: FSMSettings | None = None
    """FSM settings."""
    ln: LNSettings | None = None
    """LN settings."""
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    """Client-side rate limit towards the gateway."""
    page_size: int = Field(default=1000, ge=1, le=10_000)
    """Records per page (M3 maxrecs, IDO recordcap, FSM _limit)."""

    @model_validator(mode="after")
    def _product_settings(self) -> InforSpec:
        if self.product_line == "M3" and self.m3 is None:
            raise ValueError("infor.m3 is required when productLine is M3")
        if self.product_line == "SyteLine" and self.syteline is None:
            raise ValueError("infor.syteline is required when productLine is SyteLine")
        return self


AnaplanAuthMethod: TypeAlias = Literal["basic", "certificate", "oauth"]


class AnaplanAuth(_Wire):
    """How the worker authenticates to Anaplan."""

    method: AnaplanAuthMethod
    """basic (user and password), certificate (CA certificate and private key) or oauth (client credentials)."""
    credentials_secret_ref: SecretRef
    """Secret with the credentials, mounted whole (basic: ``username``, ``password``; certificate:
    ``certificate.pem``, ``private-key.pem``; oauth: ``client_id``, ``client_secret``, ``refresh_token``)."""


class AnaplanSpec(_Wire):
    """The Anaplan model the actuals are loaded into."""

    workspace: Name
    """Workspace name or id."""
    model: Name
    """Model name or id."""
    auth: AnaplanAuth
    """Authentication."""
    auth_url: Url | None = None
    """Overrides the authentication service (default ``https://auth.anaplan.com``)."""
    api_url: Url | None = None
    """Overrides the Integration API base (default ``https://api.anaplan.com/2/0``)."""
    oauth_url: Url | None = None
    """Overrides the OAuth service (default ``https://us1a.app.anaplan.com``)."""


class FlowSpec(_Wire):
    """One entity loaded into Anaplan by one import action."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel(
                "!(has(self.lookbackMonths) && (has(self.periodFrom) || has(self.periodTo)))",
                "lookbackMonths and periodFrom/periodTo are mutually exclusive",
                ".lookbackMonths",
            ),
            _cel("!has(self.periodTo) || has(self.periodFrom)", "periodTo requires periodFrom", ".periodTo"),
            _cel(
                "!has(self.periodTo) || !has(self.periodFrom) || self.periodFrom <= self.periodTo",
                "periodFrom must not be after periodTo",
                ".periodTo",
            ),
        )
    )

    entity: Entity
    """Record kind to extract from Infor."""
    import_action: Name
    """Anaplan import action (name or id) that loads the file."""
    file: Name | None = None
    """Anaplan import data source file (name or id); the import's own source file when unset."""
    period_from: Period | None = None
    """First period (YYYY-MM) to extract; incremental by watermark when no window is set."""
    period_to: Period | None = None
    """Last period (YYYY-MM) to extract (requires periodFrom)."""
    lookback_months: int | None = Field(default=None, ge=1, le=120)
    """Extract a rolling window of this many months up to the current period instead of a fixed one."""
    overlap: Duration = "1h"
    """How far before the last watermark an incremental read starts again (late changes); duplicates are
    removed by content hash."""

    @model_validator(mode="after")
    def _window(self) -> FlowSpec:
        if self.lookback_months is not None and (self.period_from or self.period_to):
            raise ValueError("lookbackMonths and periodFrom/periodTo are mutually exclusive")
        if self.period_to is not None and self.period_from is None:
            raise ValueError("periodTo requires periodFrom")
        if self.period_to is not None and self.period_from is not None and self.period_from > self.period_to:
            raise ValueError(f"periodFrom {self.period_from} must not be after periodTo {self.period_to}")
        return self

    @property
    def overlap_delta(self) -> dt.timedelta:
        return parse_duration(self.overlap)


MissingMembersPolicy: TypeAlias = Literal["Add", "Stop"]


class AccountsMapping(_Wire):
    """Infor GL accounts -> an Anaplan list."""

    list_name: Name = Field(default="GL Accounts", alias="list")
    """Anaplan list holding the accounts."""
    import_action: Name | None = None
    """Import action that adds members to the list; added through the transactional list API when unset."""


class CostCentersMapping(_Wire):
    """Infor cost centers (an accounting dimension) -> an Anaplan list."""

    list_name: Name = Field(default="Cost Centers", alias="list")
    """Anaplan list holding the cost centers."""
    import_action: Name | None = None
    """Import action that adds members to the list; added through the transactional list API when unset."""


class Mappings(_Wire):
    """How Infor dimensions map onto Anaplan lists, aligned before any actual is loaded."""

    accounts: AccountsMapping = Field(default_factory=AccountsMapping)
    """GL accounts list."""
    cost_centers: CostCentersMapping = Field(default_factory=CostCentersMapping)
    """Cost centers list."""
    missing_members: MissingMembersPolicy = "Add"
    """Add: add members missing in Anaplan before loading; Stop: stop the run and report them."""


class M3BudgetTarget(_Wire):
    """An M3 budget (BUS100MI) to write into."""

    division: str = Field(min_length=1, max_length=3)
    """Division (DIVI) of the budget."""
    budget_number: str = Field(pattern=r"^[0-9]{1,3}$")
    """Budget number (BUNO)."""
    budget_version: str = Field(min_length=1, max_length=3)
    """Budget version (BVER); use a version reserved for the connector."""


class SyteLineBudgetTarget(_Wire):
    """SyteLine chart-of-accounts budgets (SLChartBps) to write into."""

    config: str = Field(min_length=1, max_length=128)
    """Mongoose configuration (site) to write to."""


class WritebackTarget(_Wire):
    """Where approved figures go in Infor: exactly one of m3 or syteline."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel("has(self.m3) != has(self.syteline)", "writeback.target needs exactly one of m3 or syteline")
        )
    )

    m3: M3BudgetTarget | None = None
    """M3 budget number and version."""
    syteline: SyteLineBudgetTarget | None = None
    """SyteLine site."""

    @model_validator(mode="after")
    def _exactly_one(self) -> WritebackTarget:
        if (self.m3 is None) == (self.syteline is None):
            raise ValueError("writeback.target needs exactly one of m3 or syteline")
        return self


class WritebackSpec(_Wire):
    """Approved budgets or forecasts exported from Anaplan and posted into Infor."""

    export_action: Name
    """Anaplan export action (name or id) producing the figures."""
    version: Literal["Budget", "Forecast"] = "Budget"
    """Anaplan version exported."""
    target: WritebackTarget
    """Infor target."""
    dry_run: bool = False
    """Compute and report what would be written, write nothing."""


class ResourceRequirements(_Wire):
    """Container resources of the worker."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Requested resources, e.g. ``cpu: 100m``, ``memory: 256Mi``."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Resource limits."""


class Toleration(_Wire):
    """A pod toleration (as in the Pod spec)."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value for Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when unset."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated."""


class JobTemplate(_Wire):
    """Overrides for the Job that runs each SyncRun."""

    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Worker image; the operator's own image when unset."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Worker container resources."""
    active_deadline_seconds: int = Field(default=3600, ge=1)
    """Longest a run may take, retries included; then the Job fails with DeadlineExceeded."""
    backoff_limit: int = Field(default=2, ge=0, le=20)
    """Retries of a failed worker pod (configuration errors are never retried)."""
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)
    """How long a finished Job (and its pod logs) is kept; results are already in the SyncRun status."""
    service_account_name: ResourceName = "ml-connector-worker"
    """ServiceAccount of the worker (it needs to read its SyncRun and SyncConnection, write SyncRun status and
    take the model's Lease)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node selector of the worker pod."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=50)
    """Tolerations of the worker pod."""


class SQLiteAudit(_Wire):
    """The embedded audit store (a file)."""

    path: str = Field(default="/var/lib/ml-connector/audit.sqlite3", pattern=r"^/.+[^/]$", max_length=1024)
    """Absolute path of the database file in the worker."""
    claim_name: ResourceName | None = None
    """PersistentVolumeClaim mounted at the file's directory; without it the store lives as long as the pod."""


class PostgresAudit(_Wire):
    """A PostgreSQL audit store."""

    dsn_secret_ref: SecretKeyRef
    """Secret key holding the connection string (``postgresql://...``)."""


class AuditSpec(_Wire):
    """Where every record's fate is written: exactly one of sqlite or postgres."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel("has(self.sqlite) != has(self.postgres)", "audit needs exactly one of sqlite or postgres")
        )
    )

    sqlite: SQLiteAudit | None = None
    """Embedded SQLite store."""
    postgres: PostgresAudit | None = None
    """PostgreSQL store."""

    @model_validator(mode="after")
    def _exactly_one(self) -> AuditSpec:
        if (self.sqlite is None) == (self.postgres is None):
            raise ValueError("audit needs exactly one of sqlite or postgres")
        return self


class SyncConnectionSpec(_Wire):
    """Desired state of a SyncConnection: what to move, where, and when."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel(
                "!has(self.writeback) || self.infor.productLine in ['M3', 'SyteLine']",
                "writeback is supported for infor.productLine M3 and SyteLine only",
                ".writeback",
            ),
            _cel(
                "!has(self.writeback) || (self.infor.productLine == 'M3') == has(self.writeback.target.m3)",
                "writeback.target.m3 is required when infor.productLine is M3, and only then",
                ".writeback.target",
            ),
        )
    )

    infor: InforSpec
    """Infor source."""
    anaplan: AnaplanSpec
    """Anaplan target."""
    flows: list[FlowSpec] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["entity"]},
    )
    """Entities to load, one import action each (one flow per entity)."""
    mappings: Mappings = Field(default_factory=Mappings)
    """Dimension alignment."""
    writeback: WritebackSpec | None = None
    """Budget write-back (Anaplan -> Infor)."""
    schedule: Schedule | None = None
    """Cron schedule of the load (five fields or @hourly/@daily/...); manual runs only when unset."""
    time_zone: TimeZone = "UTC"
    """IANA time zone of the schedule, e.g. Europe/Berlin."""
    suspend: bool = False
    """Stop scheduling new runs (runs already started go on; manual requests are still honoured)."""
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    """Forbid: skip a run while another is active; Allow: run alongside; Replace: stop the active run first."""
    starting_deadline_seconds: int | None = Field(default=None, ge=0)
    """A scheduled run missed by more than this is skipped; also bounds the missed runs counted after downtime."""
    successful_runs_history_limit: int = Field(default=3, ge=0, le=100)
    """Finished successful SyncRuns kept."""
    failed_runs_history_limit: int = Field(default=1, ge=0, le=100)
    """Finished failed SyncRuns kept."""
    job_template: JobTemplate = Field(default_factory=JobTemplate)
    """Overrides for the worker Job."""
    audit: AuditSpec | None = None
    """Audit store; an embedded SQLite file in the worker when unset."""

    @model_validator(mode="after")
    def _cross_field(self) -> SyncConnectionSpec:
        entities = [flow.entity for flow in self.flows]
        duplicates = sorted({entity for entity in entities if entities.count(entity) > 1})
        if duplicates:
            raise ValueError(f"flows: entity {', '.join(duplicates)} appears more than once")
        if self.writeback is not None:
            if self.infor.product_line not in ("M3", "SyteLine"):
                raise ValueError("writeback is supported for infor.productLine M3 and SyteLine only")
            if (self.infor.product_line == "M3") != (self.writeback.target.m3 is not None):
                raise ValueError("writeback.target.m3 is required when infor.productLine is M3, and only then")
        return self


# --------------------------------------------------------------------------------------------------
# Status (written by the operator and the worker only)

ConditionStatus: TypeAlias = Literal["True", "False", "Unknown"]


class Condition(_StatusWire):
    """A kstatus / Flux style condition."""

    type: str = Field(max_length=316)
    """Ready, Reconciling or Stalled."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """CamelCase reason."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: dt.datetime
    """When the status last changed."""
    observed_generation: int | None = None
    """The generation the condition was computed for."""


_CONDITIONS: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class RunRef(_StatusWire):
    """A SyncRun of this connection."""

    name: str
    """SyncRun name."""
    uid: str | None = None
    """SyncRun uid."""


class LastRun(_StatusWire):
    """A finished SyncRun."""

    name: str
    """SyncRun name."""
    time: dt.datetime
    """When it completed."""


class Discovered(_StatusWire):
    """Anaplan ids found by name, cached until one stops working."""

    workspace_id: str | None = None
    """Workspace id."""
    model_id: str | None = None
    """Model id."""
    imports: dict[str, str] = Field(default_factory=dict)
    """Import action name -> id."""
    exports: dict[str, str] = Field(default_factory=dict)
    """Export action name -> id."""
    lists: dict[str, str] = Field(default_factory=dict)
    """List name -> id."""
    files: dict[str, str] = Field(default_factory=dict)
    """File name -> id."""


class SyncConnectionStatus(_StatusWire):
    """Observed state of a SyncConnection."""

    observed_generation: int | None = None
    """The spec generation last acted on."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS)
    """Ready, Reconciling (only while True) and Stalled (only while True)."""
    last_schedule_time: dt.datetime | None = None
    """Scheduled time of the last run created by the schedule."""
    next_schedule_time: dt.datetime | None = None
    """When the schedule fires next (unset while suspended)."""
    last_successful_run: LastRun | None = None
    """The last run that succeeded."""
    last_handled_request_at: str | None = None
    """The ml-connector.com/requested-at annotation value last acted on."""
    discovered: Discovered | None = None
    """Anaplan ids discovered by name."""
    active: list[RunRef] = Field(default_factory=list)
    """Runs not yet finished."""


class RunCounts(_StatusWire):
    """Records moved by a run."""

    extracted: int = Field(default=0, ge=0)
    """Read from the source."""
    loaded: int = Field(default=0, ge=0)
    """Accepted by the target."""
    rejected: int = Field(default=0, ge=0)
    """Refused by the target (see the audit store for each reason)."""
    skipped: int = Field(default=0, ge=0)
    """Unchanged since the last run (same content hash), or already present."""


class Reconciliation(_StatusWire):
    """Source totals against what was loaded."""

    balanced: bool
    """Whether every account and period matched."""
    source_total: str
    """Sum of source amounts (decimal string)."""
    loaded_total: str
    """Sum of loaded amounts (decimal string)."""
    mismatches: int = Field(default=0, ge=0)
    """Account/period pairs that differ."""
    message: str = ""
    """Summary of the largest differences."""


class LockInfo(_StatusWire):
    """The model Lease a run waits for or holds."""

    lease: str
    """Lease name."""
    holder: str | None = None
    """Holder identity (a SyncRun uid) while waiting."""


class SyncRunStatus(_StatusWire):
    """Observed state of a SyncRun."""

    observed_generation: int | None = None
    """The spec generation last acted on."""
    phase: RunPhase | None = None
    """Pending, WaitingForLock, Running, Succeeded or Failed."""
    job_name: str | None = None
    """The Job running the worker."""
    start_time: dt.datetime | None = None
    """When the worker started."""
    completion_time: dt.datetime | None = None
    """When the run finished."""
    counts: RunCounts | None = None
    """Records moved."""
    reconciliation: Reconciliation | None = None
    """Totals check."""
    lock: LockInfo | None = None
    """Model Lease."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS)
    """Ready, Reconciling (only while True) and Stalled (only while True)."""
    message: str | None = Field(default=None, max_length=32768)
    """What is happening or what went wrong."""
    flow_counts: dict[str, RunCounts] = Field(default_factory=dict)
    """Records moved per flow (entity)."""
    lock_wait_seconds: float | None = Field(default=None, ge=0)
    """Time spent waiting for the model Lease."""
    api_errors: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Error answers from Infor and Anaplan seen by the run, by service and HTTP status code."""
    discovered: Discovered | None = None
    """Anaplan ids the run discovered by name (copied into the connection's status)."""
    error: str | None = Field(default=None, max_length=32768)
    """What stopped the worker, as it reported it (never a secret)."""


# --------------------------------------------------------------------------------------------------
# SyncRun spec


class LocalObjectRef(_Wire):
    """A resource in the same namespace."""

    name: ResourceName
    """Its name."""


class PeriodRange(_Wire):
    """A range of periods, both ends included."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(_cel("self.from <= self.to", "period.from must not be after period.to", ".to"))
    )

    from_: Period = Field(alias="from")
    """First period (YYYY-MM)."""
    to: Period
    """Last period (YYYY-MM)."""

    @model_validator(mode="after")
    def _ordered(self) -> PeriodRange:
        if self.from_ > self.to:
            raise ValueError(f"period.from {self.from_} must not be after period.to {self.to}")
        return self


class SyncRunSpec(_Wire):
    """One execution of a SyncConnection. Immutable: create a new SyncRun to change anything."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            _cel(
                "self == oldSelf",
                "SyncRun spec is immutable; create a new SyncRun instead",
                reason="FieldValueForbidden",
            ),
            _cel(
                "self.direction != 'WriteBack' || !has(self.flows) || size(self.flows) == 0",
                "flows select load flows; they cannot be set for direction WriteBack",
                ".flows",
            ),
        )
    )

    connection_ref: LocalObjectRef
    """The SyncConnection to run."""
    direction: Direction = "Load"
    """Load (Infor -> Anaplan) or WriteBack (Anaplan -> Infor)."""
    flows: list[Entity] = Field(
        default_factory=list, max_length=20, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Subset of the connection's flows (by entity); all of them when empty."""
    period: PeriodRange | None = None
    """Period window overriding the flows' own."""
    replay_of: ResourceName | None = None
    """Rebuild and reload the files of this earlier SyncRun from the audit store instead of extracting."""
    dry_run: bool = False
    """Extract and validate, load nothing."""
    trigger: Literal["Scheduled", "Manual"] = "Manual"
    """What created the run."""
    scheduled_time: dt.datetime | None = None
    """The schedule time a scheduled run stands for."""

    @model_validator(mode="after")
    def _flows(self) -> SyncRunSpec:
        if self.direction == "WriteBack" and self.flows:
            raise ValueError("flows select load flows; they cannot be set for direction WriteBack")
        return self


# --------------------------------------------------------------------------------------------------
# Whole resources


class ObjectMeta(BaseModel):
    """The parts of ``metadata`` the operator reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    name: ResourceName
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: dt.datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SyncConnection(_Wire):
    """An Infor CloudSuite -> Anaplan connection, run on a schedule."""

    api_version: Literal["ml-connector.com/v1alpha1"] = API_VERSION
    kind: Literal["SyncConnection"] = "SyncConnection"
    metadata: ObjectMeta
    spec: SyncConnectionSpec
    status: SyncConnectionStatus = Field(default_factory=SyncConnectionStatus)


class SyncRun(_Wire):
    """One run of a SyncConnection."""

    api_version: Literal["ml-connector.com/v1alpha1"] = API_VERSION
    kind: Literal["SyncRun"] = "SyncRun"
    metadata: ObjectMeta
    spec: SyncRunSpec
    status: SyncRunStatus = Field(default_factory=SyncRunStatus)


# --------------------------------------------------------------------------------------------------
# Loading manifests (the CLI's connection.yaml)


class SpecError(ValueError):
    """A manifest that does not validate; the message lists each problem with its field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid resource:\n" + "\n".join(f"  {problem}" for problem in problems))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part.startswith(("function-", "literal[")):
            continue  # pydantic's internal names for union members / validators
        else:
            path += f".{part}" if path else part
    return path


def describe_errors(error: ValidationError) -> list[str]:
    """One ``field.path: message`` line per problem (camelCase paths, as in the manifest)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        path = _field_path(tuple(item["loc"]))
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_connection(document: Mapping[str, Any], source: str = "SyncConnection") -> SyncConnection:
    """A SyncConnection from its manifest (a mapping), or :class:`SpecError`."""
    try:
        return SyncConnection.model_validate(document)
    except ValidationError as exc:
        raise SpecError(source, describe_errors(exc)) from None


def parse_run(document: Mapping[str, Any], source: str = "SyncRun") -> SyncRun:
    """A SyncRun from its manifest (a mapping), or :class:`SpecError`."""
    try:
        return SyncRun.model_validate(document)
    except ValidationError as exc:
        raise SpecError(source, describe_errors(exc)) from None


def load_connection(path: Path) -> SyncConnection:
    """Read a ``connection.yaml`` (the SyncConnection manifest the user also applies to the cluster)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(document, dict):
        raise SpecError(
            str(path), ["expected a SyncConnection manifest (a mapping with apiVersion, kind, metadata, spec)"]
        )
    if document.get("kind") != "SyncConnection":
        raise SpecError(str(path), [f"kind: expected SyncConnection, found {document.get('kind')!r}"])
    return parse_connection(document, str(path))
