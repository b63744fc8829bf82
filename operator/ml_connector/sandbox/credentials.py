"""Fixed, known credentials for the emulators: ``ml-connector sandbox --credentials-file FILE``.

By default the emulators make up random credentials at every start (``ml-connector sandbox`` prints them).
Where they must be known in advance -- the in-cluster sandbox of the kind quickstart, whose example Secrets
(``examples/secrets.yaml``) must match what the emulators accept -- a YAML (or JSON) file fixes them::

    anaplan:
      password: ...            # of the emulated integration user integration@ml-connector.example
    infor:                     # per product line: the .ionapi keys of the tenant's authorized app
      M3:       {ci: NORTHWIND_M3_TST~..., cs: ..., saak: NORTHWIND_M3_TST#..., sask: ...}
      SyteLine: {ci: ..., cs: ..., saak: ..., sask: ...}
      FSM:      {ci: ..., cs: ..., saak: ..., sask: ...}

Every part is optional: whatever is not given stays random. The values are secrets: they are registered with
:data:`ml_connector.net.redact.SECRETS` as soon as they are read, held as :class:`pydantic.SecretStr`, and
errors name the file and the field, never a value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ml_connector.net.redact import SECRETS
from ml_connector.sandbox.infor.state import InforState, Product

#: Keys whose values are secrets wherever they appear in the file.
SECRET_KEYS = frozenset({"password", "cs", "sask"})


class CredentialsFileError(ValueError):
    """The credentials file cannot be used; the message names the file and each problem (never a value)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class TenantCredentials(_Strict):
    """The authorized app of one Infor tenant, with the keys of an ``.ionapi`` file."""

    ci: str = Field(min_length=1, max_length=512)
    """OAuth client id."""
    cs: SecretStr = Field(min_length=1)
    """OAuth client secret."""
    saak: str = Field(min_length=1, max_length=512)
    """Service account access key (the password grant's username)."""
    sask: SecretStr = Field(min_length=1)
    """Service account secret key (the password grant's password)."""


class AnaplanCredentials(_Strict):
    """The emulated Anaplan integration user's password (the user is ``integration@ml-connector.example``)."""

    password: SecretStr = Field(min_length=1)


class SandboxCredentials(_Strict):
    """Credentials the emulators accept instead of random ones."""

    anaplan: AnaplanCredentials | None = None
    infor: dict[Product, TenantCredentials] = Field(default_factory=dict)

    @property
    def anaplan_password(self) -> str | None:
        return self.anaplan.password.get_secret_value() if self.anaplan is not None else None


def _secret_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _secret_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_values(item)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_credentials(text: str, source: str = "<credentials>") -> SandboxCredentials:
    """Validate the YAML/JSON ``text`` of a credentials file; ``source`` names it in errors."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The default message quotes the offending line, which may hold a secret: give its position only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise CredentialsFileError(source, [f"not valid YAML: {problem}{where}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CredentialsFileError(source, ["expected a mapping with 'anaplan' and/or 'infor'"])
    SECRETS.add(*_secret_values(document))
    try:
        return SandboxCredentials.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{_location(tuple(error['loc']))}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise CredentialsFileError(source, problems) from None


def load_credentials(path: str | Path) -> SandboxCredentials:
    """Read and validate the credentials file at ``path`` (e.g. a mounted Secret)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CredentialsFileError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise CredentialsFileError(source, ["is a directory, not a file"]) from None
    except PermissionError:
        raise CredentialsFileError(source, ["permission denied"]) from None
    except UnicodeDecodeError:
        raise CredentialsFileError(source, ["is not UTF-8 text"]) from None
    return parse_credentials(text, source)


def apply_infor_credentials(state: InforState, credentials: SandboxCredentials) -> None:
    """Give each tenant of ``state`` named in ``credentials`` those fixed client and service-account keys."""
    for product, fixed in credentials.infor.items():
        tenant = state.tenant(product)
        tenant.client_id = fixed.ci
        tenant.client_secret = fixed.cs.get_secret_value()
        tenant.saak = fixed.saak
        tenant.sask = fixed.sask.get_secret_value()
