"""Write ``.ionapi`` credential files for the emulator's tenants (reference section 1, pinned contract).

For tenant ``TI`` on base URL ``U``: ``iu = U``, ``pu = U/TI/as/``, ``ot``/``or``/``oa`` the standard paths,
``ci = TI~...``, ``saak = TI#...`` — exactly what a downloaded file looks like, pointed at loopback.
Files are created with mode 0600 (they hold secrets).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ml_connector.sandbox.infor.state import InforState, Product, Tenant


def ionapi_document(tenant: Tenant, base_url: str) -> dict[str, Any]:
    base_url = base_url.rstrip("/")
    return {
        "ti": tenant.tenant_id,
        "cn": tenant.client_name,
        "dt": "12",
        "ci": tenant.client_id,
        "cs": tenant.client_secret,
        "iu": base_url,
        "pu": f"{base_url}/{tenant.tenant_id}/as/",
        "oa": "authorization.oauth2",
        "ot": "token.oauth2",
        "or": "revoke_token.oauth2",
        "ev": "U1700000000",
        "v": "1.0",
        "saak": tenant.saak,
        "sask": tenant.sask,
    }


def write_ionapi(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as JSON to ``path`` with mode 0600 (created so, never world-readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)
    return path


def write_ionapi_files(state: InforState, base_url: str, directory: str | Path) -> dict[Product, Path]:
    """One ``<TENANT>.ionapi`` per tenant of ``state`` into ``directory``; returns product -> path."""
    directory = Path(directory)
    out: dict[Product, Path] = {}
    for tenant in state.tenants.values():
        out[tenant.product] = write_ionapi(directory / f"{tenant.tenant_id}.ionapi", ionapi_document(tenant, base_url))
    return out
