"""Credentials of a run, read from files laid out as Kubernetes mounts Secrets: ``<dir>/<secret name>/<key>``.

The CLI and the Job share this one code path. The directory is ``ML_CONNECTOR_SECRETS_DIR`` (or the
``secrets_dir`` argument); the SyncConnection names the Secrets and keys:

* Infor: ``spec.infor.credentialsSecretRef`` -> ``<dir>/<name>/<key>`` (key ``credentials.ionapi`` by default);
* Anaplan: ``spec.anaplan.auth.credentialsSecretRef`` -> ``<dir>/<name>/`` holding, per method,
  ``username`` + ``password`` (basic), ``certificate.pem`` + ``private-key.pem`` (+ optional
  ``private-key-password``) (certificate), ``client-id`` + ``refresh-token`` (+ optional ``client-secret``;
  the underscore spellings ``client_id``, ``refresh_token``, ``client_secret`` are accepted too) (oauth);
* PostgreSQL audit: ``spec.audit.postgres.dsnSecretRef`` -> ``<dir>/<name>/<key>``.

The Job mounts each Secret at a fixed place instead and says where through ``ML_CONNECTOR_INFOR_CREDENTIALS_FILE``,
``ML_CONNECTOR_ANAPLAN_CREDENTIALS_DIR`` and ``ML_CONNECTOR_AUDIT_DSN_FILE``; when set, those win.

Every secret value is registered with :data:`ml_connector.net.redact.SECRETS` the moment it is read, and held
as :class:`pydantic.SecretStr`; errors name the file and the key, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from ml_connector.infor import IonApiCredentials, IonApiFileError
from ml_connector.net.redact import SECRETS
from ml_connector.spec import SyncConnection
from ml_connector.sync.errors import SyncConfigError

ENV_SECRETS_DIR = "ML_CONNECTOR_SECRETS_DIR"
#: Set by the Job (kube/jobs.py): exact mount points, used instead of ``<dir>/<secret name>``.
ENV_INFOR_CREDENTIALS_FILE = "ML_CONNECTOR_INFOR_CREDENTIALS_FILE"
ENV_ANAPLAN_CREDENTIALS_DIR = "ML_CONNECTOR_ANAPLAN_CREDENTIALS_DIR"
ENV_AUDIT_DSN_FILE = "ML_CONNECTOR_AUDIT_DSN_FILE"

AnaplanMethod = Literal["basic", "certificate", "oauth"]

#: Keys per Anaplan method: (required, optional); each key may have alternative spellings.
ANAPLAN_KEYS: Mapping[AnaplanMethod, tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]] = {
    "basic": ((("username",), ("password",)), ()),
    "certificate": ((("certificate.pem",), ("private-key.pem",)), (("private-key-password",),)),
    "oauth": ((("client-id", "client_id"), ("refresh-token", "refresh_token")), (("client-secret", "client_secret"),)),
}


@dataclass(frozen=True)
class AnaplanCredentials:
    """What one Anaplan auth method needs; secrets as :class:`SecretStr` (the repr never shows them)."""

    method: AnaplanMethod
    source: str
    username: str | None = None
    password: SecretStr | None = None
    certificate: bytes | None = None
    private_key: SecretStr | None = None
    key_password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None


@dataclass(frozen=True)
class Credentials:
    """Both sides' credentials for one run."""

    infor: IonApiCredentials
    anaplan: AnaplanCredentials


def secrets_dir_from(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (environ if environ is not None else os.environ).get(ENV_SECRETS_DIR)
    return Path(value) if value else None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SyncConfigError(f"{what}: file {path} not found") from None
    except IsADirectoryError:
        raise SyncConfigError(f"{what}: {path} is a directory, not a file") from None
    except PermissionError:
        raise SyncConfigError(f"{what}: permission denied reading {path}") from None


def _text(data: bytes, path: Path, what: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SyncConfigError(f"{what}: {path} is not UTF-8 text") from None
    return text.rstrip("\r\n")


def _secret_text(path: Path, what: str) -> SecretStr:
    value = _text(_read(path, what), path, what)
    if not value:
        raise SyncConfigError(f"{what}: {path} is empty")
    SECRETS.add(value)
    return SecretStr(value)


class SecretsDir:
    """``<root>/<secret name>/<key>``; ``overrides`` map a Secret name to the directory it is mounted at."""

    def __init__(self, root: Path | None, overrides: Mapping[str, Path] | None = None) -> None:
        self.root = root
        self.overrides = dict(overrides or {})

    def secret(self, name: str, what: str) -> Path:
        if name in self.overrides:
            return self.overrides[name]
        if self.root is None:
            raise SyncConfigError(
                f"{what}: no secrets directory: set {ENV_SECRETS_DIR} (or pass --secrets-dir) to a directory laid out"
                f" as <dir>/{name}/<key>, the way Kubernetes mounts Secret {name!r}"
            )
        directory = self.root / name
        if not directory.is_dir():
            raise SyncConfigError(f"{what}: Secret {name!r} not found: {directory} is not a directory")
        return directory

    def file(self, name: str, key: str, what: str) -> Path:
        return self.secret(name, what) / key


def load_infor(connection: SyncConnection, secrets: SecretsDir, *, infor_file: Path | None = None) -> IonApiCredentials:
    spec = connection.spec.infor
    ref = spec.credentials_secret_ref
    what = f"Infor credentials (Secret {ref.name!r}, key {ref.key!r})"
    path = infor_file or secrets.file(ref.name, ref.key, what)
    try:
        return IonApiCredentials.load(path, tenant_url=spec.tenant_url, token_endpoint=spec.token_endpoint)
    except IonApiFileError as exc:
        raise SyncConfigError(f"{what}: {exc}") from None


def _pick(directory: Path, spellings: tuple[str, ...]) -> Path | None:
    for key in spellings:
        if (directory / key).is_file():
            return directory / key
    return None


def load_anaplan(
    connection: SyncConnection, secrets: SecretsDir, *, anaplan_dir: Path | None = None
) -> AnaplanCredentials:
    auth = connection.spec.anaplan.auth
    name = auth.credentials_secret_ref.name
    method: AnaplanMethod = auth.method
    what = f"Anaplan {method} credentials (Secret {name!r})"
    directory = anaplan_dir or secrets.secret(name, what)
    required, optional = ANAPLAN_KEYS[method]
    found: dict[str, Path] = {}
    missing = []
    for spellings in required:
        path = _pick(directory, spellings)
        if path is None:
            missing.append(" or ".join(spellings))
        else:
            found[spellings[0]] = path
    if missing:
        wanted = ", ".join(" or ".join(s) for s in required)
        raise SyncConfigError(
            f"{what}: key(s) {', '.join(missing)} missing in {directory} (method {method} needs {wanted})"
        )
    for spellings in optional:
        path = _pick(directory, spellings)
        if path is not None:
            found[spellings[0]] = path
    source = str(directory)
    if method == "basic":
        username = _text(_read(found["username"], what), found["username"], what).strip()
        if not username:
            raise SyncConfigError(f"{what}: {found['username']} is empty")
        return AnaplanCredentials("basic", source, username=username, password=_secret_text(found["password"], what))
    if method == "certificate":
        certificate = _read(found["certificate.pem"], what)
        key_password = found.get("private-key-password")
        return AnaplanCredentials(
            "certificate",
            source,
            certificate=certificate,
            private_key=_secret_text(found["private-key.pem"], what),
            key_password=_secret_text(key_password, what) if key_password else None,
        )
    client_id = _text(_read(found["client-id"], what), found["client-id"], what).strip()
    secret_path = found.get("client-secret")
    return AnaplanCredentials(
        "oauth",
        source,
        client_id=client_id,
        refresh_token=_secret_text(found["refresh-token"], what),
        client_secret=_secret_text(secret_path, what) if secret_path else None,
    )


def load_credentials(
    connection: SyncConnection,
    secrets_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Read both sides' credentials for ``connection`` (see the module docstring for the layout).

    ``secrets_dir`` defaults to ``$ML_CONNECTOR_SECRETS_DIR``; the Job's exact-path variables win when set.
    Raises :class:`SyncConfigError` naming the Secret, key and file when something is missing or malformed.
    """
    env = environ if environ is not None else os.environ
    root = secrets_dir if secrets_dir is not None else secrets_dir_from(env)
    secrets = SecretsDir(root)
    infor_file = Path(env[ENV_INFOR_CREDENTIALS_FILE]) if env.get(ENV_INFOR_CREDENTIALS_FILE) else None
    anaplan_dir = Path(env[ENV_ANAPLAN_CREDENTIALS_DIR]) if env.get(ENV_ANAPLAN_CREDENTIALS_DIR) else None
    return Credentials(
        infor=load_infor(connection, secrets, infor_file=infor_file),
        anaplan=load_anaplan(connection, secrets, anaplan_dir=anaplan_dir),
    )


def load_audit_dsn(
    connection: SyncConnection, secrets_dir: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The PostgreSQL DSN of ``spec.audit.postgres`` (registered as a secret), or None without one."""
    audit = connection.spec.audit
    if audit is None or audit.postgres is None:
        return None
    env = environ if environ is not None else os.environ
    ref = audit.postgres.dsn_secret_ref
    what = f"audit database DSN (Secret {ref.name!r}, key {ref.key!r})"
    if env.get(ENV_AUDIT_DSN_FILE):
        path = Path(env[ENV_AUDIT_DSN_FILE])
    else:
        root = secrets_dir if secrets_dir is not None else secrets_dir_from(env)
        path = SecretsDir(root).file(ref.name, ref.key, what)
    dsn = _secret_text(path, what).get_secret_value().strip()
    SECRETS.add(dsn)
    return dsn
