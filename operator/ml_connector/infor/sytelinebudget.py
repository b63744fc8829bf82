"""SyteLine budget write-back into ``SLChartBps`` (Chart of Accounts Budget and Plan), query before post.

One ``SLChartBps`` row per (``Acct``, ``AcctUnit1``, ``FiscalYear``) and site holds twelve monthly
amounts per version: ``Budget`` -> ``BudAmt1..12``, ``Forecast`` -> ``PlanAmt1..12`` (month = calendar
month, fiscal year = calendar year; pinned contract, configurable in ``SyteLineOptions.version_properties``).

Per site: load the existing rows of the years concerned, then per row

* absent -> ``Action 1`` (insert) with the key and the month properties of the lines;
* present -> ``Action 2`` with its ``_ItemId`` (optimistic lock on the record date) and only the
  months whose value differs; equal months are ``unchanged``; a row with nothing to change is not sent.

Updates go in batches; a batch answered ``Success: false`` (or not answered at all) is settled by
reading the rows again and reporting each line by what is really there. Amounts are in the site's
domestic currency: a line's currency is checked only when ``SyteLineOptions.site_currencies`` is set.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ml_connector.infor.budgets import (
    BudgetLineOutcome,
    BudgetLines,
    BudgetWriteReport,
    Outcome,
    check_version,
    iterate,
    quantize,
)
from ml_connector.infor.errors import BudgetWriteError, GatewayError, MongooseError
from ml_connector.infor.mapping import SourceRecordError, trim
from ml_connector.infor.mongoose import ACTION_INSERT, ACTION_UPDATE, Change
from ml_connector.records import BudgetLine, check_period

if TYPE_CHECKING:
    from ml_connector.infor.syteline import SyteLineProductLine

IDO = "SLChartBps"
_TABLE = re.compile(r"PBT=\[[^\]]*\]")
RowKey = tuple[str, str, int]  # Acct, AcctUnit1, FiscalYear


@dataclass
class _Existing:
    item_id: str
    values: dict[int, Decimal | None]


@dataclass
class _Cell:
    line: BudgetLine
    amount: Decimal
    previous: Decimal | None = None
    outcome: Outcome = "added"


@dataclass
class _Row:
    key: RowKey
    cells: dict[int, _Cell] = field(default_factory=dict)  # month -> cell


def _amount(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return trim(number) if number.is_finite() else None


class SyteLineBudgets:
    def __init__(self, product: SyteLineProductLine) -> None:
        self.product = product
        self.api = product.api
        self.options = product.options
        self._table_id = ""

    def _prefix(self, version: str) -> str:
        prefix = self.options.version_properties.get(version)
        if prefix is None:
            known = ", ".join(sorted(self.options.version_properties))
            raise BudgetWriteError(f"SyteLine {IDO} has no amounts for version {version!r}; known versions: {known}")
        return prefix

    async def _load(
        self, config: str, prefix: str, keys: Collection[RowKey] | None, years: Collection[int]
    ) -> dict[RowKey, _Existing]:
        properties = ("Acct", "AcctUnit1", "FiscalYear", *(f"{prefix}{m}" for m in range(1, 13)))
        filter_ = f"FiscalYear >= {min(years)} AND FiscalYear <= {max(years)}" if years else None
        out: dict[RowKey, _Existing] = {}
        async for items in self.api.load(IDO, config, properties=properties, filter=filter_,
                                         page_size=max(self.options.page_size, 200)):  # fmt: skip
            for row in items:
                try:
                    row_key = (str(row.get("Acct") or "").strip(), str(row.get("AcctUnit1") or "").strip(),
                               int(str(row.get("FiscalYear") or "0").strip()))  # fmt: skip
                except ValueError:
                    continue
                if keys is not None and row_key not in keys:
                    continue
                values = {m: _amount(row.get(f"{prefix}{m}")) for m in range(1, 13)}
                item_id = str(row.get("_ItemId") or "")
                if not self._table_id and (table := _TABLE.match(item_id)):
                    self._table_id = table.group(0)
                out[row_key] = _Existing(item_id, values)
        return out

    # -- write ---------------------------------------------------------------------------------

    async def write(self, lines: BudgetLines, *, version: str, dry_run: bool) -> BudgetWriteReport:
        prefix = self._prefix(version)
        report = BudgetWriteReport("SyteLine", version, dry_run)
        decimals = self.options.amount_decimals
        by_site: dict[str, dict[RowKey, _Row]] = {}
        cc_sites: dict[str, str] | None = None
        currencies = self.options.site_currencies
        async for line in iterate(lines):
            refusal = check_version(line, version)
            if refusal is None:
                try:
                    check_period(line.period)
                except ValueError as exc:
                    refusal = str(exc)
            if refusal is None and not line.account:
                refusal = "empty account"
            site = self.options.budget_site
            if refusal is None and site is None:
                if cc_sites is None:
                    cc_sites = await self.product.cost_center_sites()
                site = cc_sites.get(line.cost_center)
                if site is None:
                    refusal = f"cost center {line.cost_center!r} is not a unit code 1 of any configured site"
            if refusal is None and site is not None and site not in self.options.sites:
                refusal = f"site {site!r} has no Mongoose configuration in SyteLineOptions.sites"
            if (
                refusal is None
                and site is not None
                and site in currencies
                and line.currency not in ("", currencies[site])
            ):
                refusal = f"currency {line.currency} differs from site {site}'s domestic currency {currencies[site]}"
            if refusal is not None or site is None:
                report.add(BudgetLineOutcome(line, "failed", f"SyteLine {IDO}", reason=refusal or "no site"))
                continue
            year, month = int(line.period[:4]), int(line.period[5:7])
            row_key = (line.account, line.cost_center, year)
            row = by_site.setdefault(site, {}).setdefault(row_key, _Row(row_key))
            if month in row.cells:
                report.add(BudgetLineOutcome(line, "failed", f"SyteLine {IDO} {self.options.sites[site]}",
                                             reason="duplicate of an earlier line for the same cell"))  # fmt: skip
                continue
            row.cells[month] = _Cell(line, quantize(line.amount, decimals))
        for site in sorted(by_site):
            await self._write_site(report, site, prefix, by_site[site], dry_run)
        return report

    def _change(self, prefix: str, row: _Row, months: list[int], found: _Existing | None) -> Change:
        props: dict[str, str | None] = {f"{prefix}{m}": format(row.cells[m].amount, "f") for m in months}
        if found is None:
            keys = {"Acct": row.key[0], "AcctUnit1": row.key[1], "FiscalYear": str(row.key[2])}
            # An insert's ItemId names only the table ("PBT=[table]"), taken from rows already read.
            return Change(ACTION_INSERT, {**keys, **props}, item_id=self._table_id)
        return Change(ACTION_UPDATE, props, item_id=found.item_id)

    async def _write_site(
        self, report: BudgetWriteReport, site: str, prefix: str, rows: dict[RowKey, _Row], dry_run: bool
    ) -> None:
        config = self.options.sites[site]
        target = f"SyteLine {IDO} {config}"
        existing = await self._load(config, prefix, set(rows), {k[2] for k in rows})
        pending: list[tuple[Change, _Row, list[int]]] = []
        for row_key, row in rows.items():
            found = existing.get(row_key)
            changed: list[int] = []
            for month, cell in sorted(row.cells.items()):
                cell.previous = found.values.get(month) if found else None
                if found is not None and cell.previous is not None and cell.previous == cell.amount:
                    cell.outcome = "unchanged"
                    report.add(BudgetLineOutcome(cell.line, "unchanged", target, cell.previous))
                    continue
                cell.outcome = "added" if found is None or cell.previous is None else "updated"
                changed.append(month)
            if not changed:
                continue
            if dry_run:
                for m in changed:
                    cell = row.cells[m]
                    report.add(BudgetLineOutcome(cell.line, cell.outcome, target, cell.previous, reason="dry run"))
            else:
                pending.append((self._change(prefix, row, changed, found), row, changed))
        size = max(1, self.options.update_batch_size)
        retry: list[tuple[_Row, list[int], str]] = []
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            try:
                result = await self.api.update(IDO, config, [c for c, _, _ in batch])
            except (GatewayError, MongooseError) as exc:
                retry.extend((row, months, str(exc)) for _, row, months in batch)
                continue
            if result.success:
                for _, row, months in batch:
                    self._report(report, row, months, target)
            else:
                # UpdateCollection is all-or-nothing: one bad change fails the batch.
                reason = result.message or "Success: false without a message"
                retry.extend((row, months, reason) for _, row, months in batch)
        if retry:
            await self._retry_one_by_one(report, config, prefix, target, retry)

    @staticmethod
    def _report(report: BudgetWriteReport, row: _Row, months: list[int], target: str) -> None:
        for m in months:
            cell = row.cells[m]
            report.add(BudgetLineOutcome(cell.line, cell.outcome, target, cell.previous))

    async def _retry_one_by_one(
        self, report: BudgetWriteReport, config: str, prefix: str, target: str, items: list[tuple[_Row, list[int], str]]
    ) -> None:
        """After a failed batch: read the rows again (fresh ItemIds), keep what landed, resend each row alone."""
        keys = {row.key for row, _, _ in items}
        try:
            fresh = await self._load(config, prefix, keys, {k[2] for k in keys})
        except (GatewayError, MongooseError) as exc:
            for row, months, reason in items:
                for m in months:
                    cell = row.cells[m]
                    report.add(BudgetLineOutcome(cell.line, "failed", target, cell.previous,
                                                 reason=f"{reason}; reading back failed too: {exc}"))  # fmt: skip
            return
        for row, months, reason in items:
            found = fresh.get(row.key)
            landed = [m for m in months if found is not None and found.values.get(m) == row.cells[m].amount]
            self._report(report, row, landed, target)
            missing = [m for m in months if m not in landed]
            if not missing:
                continue
            try:
                result = await self.api.update(IDO, config, [self._change(prefix, row, missing, found)])
            except (GatewayError, MongooseError) as exc:
                result_ok, message = False, f"{reason}; retried alone: {exc}"
            else:
                result_ok, message = result.success, result.message or reason
            if result_ok:
                self._report(report, row, missing, target)
            else:
                for m in missing:
                    cell = row.cells[m]
                    report.add(BudgetLineOutcome(cell.line, "failed", target, cell.previous, reason=message))

    # -- read ----------------------------------------------------------------------------------

    async def read(
        self, version: str, *, periods: Collection[str] | None
    ) -> AsyncGenerator[BudgetLine | SourceRecordError, None]:
        prefix = self._prefix(version)
        wanted = set(periods) if periods is not None else None
        years = {int(p[:4]) for p in wanted} if wanted else set()
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        for site, config in sorted(self.options.sites.items()):
            if self.options.budget_site is not None and site != self.options.budget_site:
                continue
            rows = await self._load(config, prefix, None, years)
            for (acct, unit, year), found in sorted(rows.items()):
                for month in range(1, 13):
                    value = found.values.get(month)
                    label = f"{year:04d}-{month:02d}"
                    if value is None or (wanted is not None and label not in wanted):
                        continue
                    yield BudgetLine(version=version, account=acct, cost_center=unit, period=label,
                                     currency=self._currency(site), amount=value, changed_at=epoch)  # fmt: skip

    def _currency(self, site: str) -> str:
        currencies = self.options.site_currencies
        return str(currencies.get(site, ""))
