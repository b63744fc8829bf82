"""Infor CloudSuite through the ION API Gateway: credentials, OAuth2, the gateway client, product lines.

Typical use::

    creds = IonApiCredentials.load("/secrets/infor/tenant.ionapi")
    async with open_product_line("M3", creds, M3Options(company="100")) as m3:
        async for item in m3.read("gl_postings", changed_since=watermark):
            if isinstance(item, SourceRecordError):
                ...  # a rejected source row: audit it
            else:
                ...  # a canonical record (ml_connector.records)
        report = await m3.write_budget(lines, version="Budget", dry_run=True)

Product lines: M3 (m3api-rest), SyteLine/CSI (Mongoose IDO), FSM (Landmark lists, GL and AP reads),
LN (not supported yet: see :mod:`ml_connector.infor.ln`).
"""

from ml_connector.infor.adapter import PRODUCT_LINES, Extracted, ProductLine, ProductLineKind, open_product_line
from ml_connector.infor.budgets import BudgetLineOutcome, BudgetWriteReport, Outcome
from ml_connector.infor.client import ClientOptions, IonApiClient
from ml_connector.infor.errors import (
    AuthenticationError,
    BudgetWriteError,
    ExtractionError,
    GatewayError,
    InforError,
    IonApiFileError,
    M3Error,
    MongooseError,
    ProductLineNotSupportedError,
    ProtocolError,
    UnsupportedEntityError,
)
from ml_connector.infor.ionapi import IonApiCredentials
from ml_connector.infor.mapping import SourceRecordError
from ml_connector.infor.options import FsmOptions, M3Options, ProductOptions, SyteLineOptions

__all__ = [
    "PRODUCT_LINES",
    "AuthenticationError",
    "BudgetLineOutcome",
    "BudgetWriteError",
    "BudgetWriteReport",
    "ClientOptions",
    "Extracted",
    "ExtractionError",
    "FsmOptions",
    "GatewayError",
    "InforError",
    "IonApiClient",
    "IonApiCredentials",
    "IonApiFileError",
    "M3Error",
    "M3Options",
    "MongooseError",
    "Outcome",
    "ProductLine",
    "ProductLineKind",
    "ProductLineNotSupportedError",
    "ProductOptions",
    "ProtocolError",
    "SourceRecordError",
    "SyteLineOptions",
    "UnsupportedEntityError",
    "open_product_line",
]
