"""M3 ``m3api-rest`` v2 over the gateway (reference §4): single ``execute`` GETs, bulk POSTs, EXPORTMI.

* ``GET  M3/m3api-rest/v2/execute/{PROGRAM}/{TRANSACTION}?FIELD=..&maxrecs=..&returncols=..&cono=..``
  -> ``{"results":[{"transaction":..,"records":[{FIELD:"value"}]}], "nrOfFailedTransactions":0, ...}``;
  an error is HTTP 400 with ``errorMessage/errorCode/errorField/errorType`` at the top level
  (or HTTP 200 with ``nrOfFailedTransactions > 0`` / ``wasTerminated`` and the error in ``results[0]``).
* ``POST M3/m3api-rest/v2/execute`` (bulk, one program): HTTP 200 with one result per transaction;
  failed ones carry ``errorMessage``. Infor's misspelled ``nrOfSuccessfullTransactions`` is kept.
* ``EXPORTMI/Select``: ``QERY`` = ``<fields> from <TABLE> where ...``, ``SEPC`` separator, one ``REPL``
  string per row. Company comes from the session (``cono``), never from the WHERE clause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import M3Error, ProtocolError

EXECUTE = "M3/m3api-rest/v2/execute"
#: [INF] a separator that does not occur in codes, amounts or dates; the free-text field is always
#: selected last and absorbs any extra separators (``str.split`` with ``maxsplit``).
EXPORT_SEPARATOR = "|"

Inputs = Mapping[str, str | int | None]


@dataclass(frozen=True, slots=True)
class BulkResult:
    """One transaction's outcome in a bulk call."""

    transaction: str
    record: Mapping[str, str]
    records: list[dict[str, str]] = field(default_factory=list)
    error: M3Error | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _trimmed(records: Any, where: str) -> list[dict[str, str]]:
    if records is None:
        return []
    if not isinstance(records, list):
        raise ProtocolError(f"{where}: 'records' is not a list")
    out: list[dict[str, str]] = []
    for record in records:
        if not isinstance(record, dict):
            raise ProtocolError(f"{where}: a record is not an object")
        out.append({k: v.strip() if isinstance(v, str) else ("" if v is None else str(v)) for k, v in record.items()})
    return out


def _error_from(program: str, transaction: str, body: Mapping[str, Any]) -> M3Error:
    message = body.get("errorMessage") or body.get("terminationReason") or body.get("message") or "unknown error"
    return M3Error(
        program,
        transaction,
        str(message).strip(),
        code=str(body["errorCode"]).strip() if body.get("errorCode") else None,
        field=str(body["errorField"]).strip() if body.get("errorField") else None,
        error_type=str(body.get("errorType") or body.get("terminationErrorType") or "") or None,
    )


def _clean_inputs(inputs: Inputs) -> dict[str, str]:
    return {name: str(value) for name, value in inputs.items() if value is not None and str(value) != ""}


class M3Api:
    """Low-level M3 access for one tenant. ``company`` sets the session company (``cono``)."""

    def __init__(self, client: IonApiClient, *, company: str | None = None, division: str | None = None) -> None:
        self.client = client
        self.company = company or None
        self.division = division or None

    # -- single transactions -------------------------------------------------------------------

    async def execute(
        self,
        program: str,
        transaction: str,
        inputs: Inputs | None = None,
        *,
        maxrecs: int | None = None,
        returncols: Sequence[str] | None = None,
        division: str | None = None,
    ) -> list[dict[str, str]]:
        """Run one MI transaction (GET) and return its records, values trimmed.

        Raises :class:`M3Error` for an MI error (HTTP 400 body, or failed/terminated 200 body).
        """
        records = await self._call(
            program, transaction, inputs, maxrecs=maxrecs, returncols=returncols, division=division
        )
        return _trimmed(records, f"M3 {program}/{transaction}")

    async def _call(
        self,
        program: str,
        transaction: str,
        inputs: Inputs | None,
        *,
        maxrecs: int | None,
        returncols: Sequence[str] | None = None,
        division: str | None = None,
    ) -> list[Any]:
        """The raw ``records`` of one GET transaction (errors raised)."""
        params: dict[str, str | int] = dict(_clean_inputs(inputs or {}))
        if maxrecs is not None:
            params["maxrecs"] = maxrecs
        if returncols:
            params["returncols"] = ",".join(returncols)
        if self.company:
            params["cono"] = self.company
        if division or self.division:
            params["divi"] = division or self.division or ""
        path = f"{EXECUTE}/{program}/{transaction}"
        status, body = await self.client.request_json("GET", path, params=params, accept=(200, 400))
        where = f"M3 {program}/{transaction}"
        if not isinstance(body, dict):
            raise ProtocolError(f"{where}: response is not a JSON object")
        if status == 400:
            raise _error_from(program, transaction, body)
        results = body.get("results") or []
        first = results[0] if results and isinstance(results[0], dict) else {}
        failed = body.get("nrOfFailedTransactions") or 0
        if body.get("wasTerminated") or failed or first.get("errorMessage"):
            return_error = first if first.get("errorMessage") else body
            raise _error_from(program, transaction, return_error)
        records = first.get("records")
        if records is not None and not isinstance(records, list):
            raise ProtocolError(f"{where}: 'records' is not a list")
        return records or []

    # -- bulk ----------------------------------------------------------------------------------

    async def execute_bulk(
        self,
        program: str,
        transactions: Sequence[tuple[str, Inputs]],
        *,
        division: str | None = None,
        idempotent: bool = False,
        maxrecs: int = 0,
    ) -> list[BulkResult]:
        """One bulk POST for ``program``; one :class:`BulkResult` per transaction, in order.

        A bulk POST that writes is never retried on 5xx/timeouts (the transport's rule for POST);
        pass ``idempotent=True`` for read-only bulks.
        """
        if not transactions:
            return []
        records = [_clean_inputs(inputs) for _, inputs in transactions]
        payload: dict[str, Any] = {
            "program": program,
            "excludeEmptyValues": False,
            "rightTrim": True,
            "maxReturnedRecords": maxrecs,
            "transactions": [
                {"transaction": name, "record": record} for (name, _), record in zip(transactions, records, strict=True)
            ],
        }
        if self.company:
            payload["cono"] = int(self.company) if self.company.isdigit() else self.company
        if division or self.division:
            payload["divi"] = division or self.division
        status, body = await self.client.request_json(
            "POST", EXECUTE, json=payload, idempotent=idempotent, accept=(200, 400)
        )
        where = f"M3 bulk {program}"
        if not isinstance(body, dict):
            raise ProtocolError(f"{where}: response is not a JSON object")
        if status == 400:
            raise _error_from(program, transactions[0][0] if len(transactions) == 1 else "(bulk)", body)
        results = body.get("results")
        if not isinstance(results, list):
            raise ProtocolError(f"{where}: response has no 'results' list")
        out: list[BulkResult] = []
        termination = body.get("terminationReason") or "the bulk call was terminated"
        for index, ((name, _), record) in enumerate(zip(transactions, records, strict=True)):
            result = results[index] if index < len(results) and isinstance(results[index], dict) else None
            if result is None or result.get("notProcessed"):
                error = M3Error(program, name, f"not processed: {termination}", error_type="NotProcessed")
                out.append(BulkResult(name, record, error=error))
            elif result.get("errorMessage") or result.get("errorCode"):
                out.append(BulkResult(name, record, error=_error_from(program, name, result)))
            else:
                out.append(BulkResult(name, record, records=_trimmed(result.get("records"), where)))
        return out

    # -- EXPORTMI ------------------------------------------------------------------------------

    async def select(self, fields: Sequence[str], table: str, where: str | None, *, maxrecs: int) -> list[list[str]]:
        """``EXPORTMI/Select`` of ``fields`` (free-text field last) -> rows as lists of trimmed strings.

        Rows whose field count is short are returned as they are; callers check ``len(row)``.
        """
        query = f"{','.join(fields)} from {table}" + (f" where {where}" if where else "")
        records = await self._call("EXPORTMI", "Select", {"QERY": query, "SEPC": EXPORT_SEPARATOR}, maxrecs=maxrecs)
        width = len(fields)
        out: list[list[str]] = []
        for record in records:
            line = record.get("REPL", "") if isinstance(record, dict) else ""
            out.append([part.strip() for part in str(line).split(EXPORT_SEPARATOR, width - 1)])
        return out
