"""Infor LN: not supported yet. This module says what is and is not covered, and fakes nothing.

What works for LN today: only what is product-neutral — the ``.ionapi`` file, the OAuth2 password
grant (LN's REST API uses the same backend-service authorized app, reference §6.2) and the gateway
client (:class:`~ml_connector.infor.client.IonApiClient`: retries, rate limit, concurrency).

What is missing, and what it would need:

* **Routes.** LN publishes OData REST services per module under ``BASE/LN/lnapi/...``; the full path
  template (``/LN/lnapi/odata/<module>.<Service>/<EntitySet>``) is inferred, not confirmed. It must be
  taken from the tenant's own API documentation (LN REST API guide: "Downloading API documentation").
* **Finance services.** The service and entity-set names for suppliers (business partners), AP
  invoices, payments, GL transactions, the chart of accounts and dimensions are not known here.
* **Company context.** Requests need ``X-Infor-LnCompany`` (else the service user's default company)
  and possibly ``X-Infor-LnIdentity``; the company option would have to be added to the options.
* **Paging and incremental reads.** OData ``$top``/``$skip`` or server-driven ``@odata.nextLink`` and a
  change-date ``$filter`` — to confirm per service.
* **Budget write-back.** LN budget entities and their keys are not known; nothing is written.
* **An emulator.** Every client here is tested against an emulator built from a reference; LN has
  neither, so an LN adapter cannot be tested faithfully yet.

Until then :func:`open_ln` raises :class:`~ml_connector.infor.errors.ProductLineNotSupportedError`.
"""

from __future__ import annotations

from typing import NoReturn

from ml_connector.infor.errors import ProductLineNotSupportedError
from ml_connector.infor.ionapi import IonApiCredentials

MISSING: tuple[str, ...] = (
    "the LN OData route template under /LN/lnapi (from the tenant's API documentation)",
    "the finance service and entity-set names (business partners, AP invoices, payments, GL transactions, "
    "chart of accounts, dimensions)",
    "the X-Infor-LnCompany company context",
    "OData paging and change-date filters per service",
    "LN budget entities for write-back",
    "an LN emulator to test against",
)


def open_ln(credentials: IonApiCredentials) -> NoReturn:
    """Always raises: LN is not supported yet (see the module docstring)."""
    needed = "; ".join(MISSING)
    raise ProductLineNotSupportedError(
        f"Infor LN (tenant {credentials.ti}) is not supported yet: authentication and the gateway client would "
        f"work, but no LN reads or write-back are implemented. Needed: {needed}. Use M3, SyteLine or FSM."
    )
