"""The ``.ionapi`` credentials file of an ION API authorized app (reference §1).

``IonApiCredentials.load(path)`` / ``IonApiCredentials.parse(text, source=...)`` read and validate
it. Errors name the file and the key and never echo a value from the file. The secrets (``cs``,
``sask``) are held as :class:`pydantic.SecretStr` and registered with
:data:`ml_connector.net.redact.SECRETS` as soon as they are read.

URLs (reference §1, "URL composition"):

* token endpoint  = ``pu + ot``      (overridable per customer: ``token_endpoint``)
* revoke endpoint = ``pu + or``      (next to an overridden token endpoint when one is given)
* API base        = ``iu + "/" + ti`` (``iu`` overridable per customer: ``tenant_url``)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from ml_connector.infor.errors import IonApiFileError
from ml_connector.net.redact import SECRETS

GrantType = Literal["password", "client_credentials"]

#: Keys that must be present and non-empty (reference §1 parser rules).
REQUIRED_KEYS: tuple[str, ...] = ("ti", "ci", "cs", "iu", "pu", "ot")
#: Optional keys with their defaults (reference §1: "default oa/ot/or").
DEFAULTS: dict[str, str] = {"oa": "authorization.oauth2", "or": "revoke_token.oauth2"}
#: Informational keys, kept as given.
INFORMATIONAL_KEYS: tuple[str, ...] = ("cn", "dt", "ev", "v")
SECRET_KEYS: frozenset[str] = frozenset({"cs", "sask"})
URL_KEYS: frozenset[str] = frozenset({"iu", "pu"})

_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _kind(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _KIND.get(type(value), type(value).__name__)


def _check_url(source: str, key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IonApiFileError(source, "is not an http(s) URL", key=key)
    return value


class IonApiCredentials(BaseModel):
    """A validated ``.ionapi`` file plus the per-customer overrides.

    The repr never shows ``cs``/``sask`` (they are :class:`SecretStr`).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    source: str
    ti: str
    ci: str
    cs: SecretStr
    iu: str
    pu: str
    ot: str
    oa: str = DEFAULTS["oa"]
    or_: str = DEFAULTS["or"]
    saak: str | None = None
    sask: SecretStr | None = None
    cn: str = ""
    dt: str = ""
    ev: str = ""
    v: str = ""
    tenant_url_override: str | None = None
    token_endpoint_override: str | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls, path: str | Path, *, tenant_url: str | None = None, token_endpoint: str | None = None
    ) -> IonApiCredentials:
        """Read and validate the file at ``path`` (e.g. a mounted Secret)."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise IonApiFileError(source, "file not found") from None
        except IsADirectoryError:
            raise IonApiFileError(source, "is a directory, not a file") from None
        except PermissionError:
            raise IonApiFileError(source, "permission denied") from None
        except UnicodeDecodeError:
            raise IonApiFileError(source, "is not UTF-8 text") from None
        except OSError as exc:
            raise IonApiFileError(source, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
        return cls.parse(text, source=source, tenant_url=tenant_url, token_endpoint=token_endpoint)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        source: str = "<ionapi>",
        tenant_url: str | None = None,
        token_endpoint: str | None = None,
    ) -> IonApiCredentials:
        """Validate the JSON ``text`` of a ``.ionapi`` file; ``source`` names it in errors."""
        if not text.strip():
            raise IonApiFileError(source, "is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg never contains the document; line/column locate the problem.
            raise IonApiFileError(
                source, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
        if not isinstance(data, dict):
            raise IonApiFileError(source, f"must contain a JSON object, found {_kind(data)}")
        return cls.from_mapping(data, source=source, tenant_url=tenant_url, token_endpoint=token_endpoint)

    @classmethod
    def from_mapping(
        cls,
        data: dict[str, Any],
        *,
        source: str = "<ionapi>",
        tenant_url: str | None = None,
        token_endpoint: str | None = None,
    ) -> IonApiCredentials:
        # Register secrets first, so that even a later validation error cannot leak them.
        for key in SECRET_KEYS:
            value = data.get(key)
            if isinstance(value, str):
                SECRETS.add(value)

        values: dict[str, str] = {}
        missing = [key for key in REQUIRED_KEYS if data.get(key) is None]
        if missing:
            others = f" (also missing: {', '.join(repr(k) for k in missing[1:])})" if len(missing) > 1 else ""
            raise IonApiFileError(source, f"is missing{others}", key=missing[0])
        for key in (*REQUIRED_KEYS, *DEFAULTS, "saak", "sask"):
            if key not in data or data[key] is None:
                continue
            value = data[key]
            if not isinstance(value, str):
                raise IonApiFileError(source, f"must be a string, found {_kind(value)}", key=key)
            if not value.strip():
                raise IonApiFileError(source, "is empty", key=key)
            values[key] = value.strip()
        for key in INFORMATIONAL_KEYS:
            value = data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise IonApiFileError(source, f"must be a string, found {_kind(value)}", key=key)
            values[key] = str(value)

        # The service-account pair comes together or not at all (then: client-credentials grant).
        has_saak, has_sask = "saak" in values, "sask" in values
        if has_saak != has_sask:
            absent = "sask" if has_saak else "saak"
            present = "saak" if has_saak else "sask"
            raise IonApiFileError(
                source, f"is missing although {present!r} is present (the service-account key pair)", key=absent
            )

        for key in URL_KEYS:
            _check_url(source, key, values[key])
        values["iu"] = values["iu"].rstrip("/")  # reference §1: strip a trailing slash
        if not values["pu"].endswith("/"):
            values["pu"] += "/"  # [INF] pu ends with "/" in every sample; token URL = pu + ot

        if tenant_url is not None:
            tenant_url = _check_url(source, "tenant URL override", tenant_url.strip()).rstrip("/")
        if token_endpoint is not None:
            token_endpoint = _check_url(source, "token endpoint override", token_endpoint.strip())

        return cls(
            source=source,
            ti=values["ti"],
            ci=values["ci"],
            cs=SecretStr(values["cs"]),
            iu=values["iu"],
            pu=values["pu"],
            ot=values["ot"],
            oa=values.get("oa", DEFAULTS["oa"]),
            or_=values.get("or", DEFAULTS["or"]),
            saak=values.get("saak"),
            sask=SecretStr(values["sask"]) if "sask" in values else None,
            cn=values.get("cn", ""),
            dt=values.get("dt", ""),
            ev=values.get("ev", ""),
            v=values.get("v", ""),
            tenant_url_override=tenant_url,
            token_endpoint_override=token_endpoint,
        )

    def with_overrides(self, *, tenant_url: str | None = None, token_endpoint: str | None = None) -> IonApiCredentials:
        """A copy with the per-customer tenant URL and/or token endpoint replaced."""
        if tenant_url is not None:
            tenant_url = _check_url(self.source, "tenant URL override", tenant_url.strip()).rstrip("/")
        if token_endpoint is not None:
            token_endpoint = _check_url(self.source, "token endpoint override", token_endpoint.strip())
        return self.model_copy(
            update={
                "tenant_url_override": tenant_url or self.tenant_url_override,
                "token_endpoint_override": token_endpoint or self.token_endpoint_override,
            }
        )

    # -- derived ------------------------------------------------------------------------------

    @property
    def tenant(self) -> str:
        return self.ti

    @property
    def tenant_url(self) -> str:
        return self.tenant_url_override or self.iu

    @property
    def api_base(self) -> str:
        """``iu + "/" + ti``: every product route hangs off it."""
        return f"{self.tenant_url}/{self.ti}"

    @property
    def token_url(self) -> str:
        return self.token_endpoint_override or self.pu + self.ot

    @property
    def revoke_url(self) -> str:
        if self.token_endpoint_override:
            # [INF] an overridden token endpoint keeps its sibling revoke endpoint (same directory).
            return urljoin(self.token_endpoint_override, self.or_)
        return self.pu + self.or_

    @property
    def grant_type(self) -> GrantType:
        """``password`` with a service account (saak/sask), else ``client_credentials`` (backend-service apps)."""
        return "password" if self.saak and self.sask else "client_credentials"

    def __str__(self) -> str:
        return f"IonApiCredentials(tenant={self.ti}, source={self.source}, grant={self.grant_type})"
