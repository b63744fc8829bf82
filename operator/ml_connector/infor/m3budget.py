"""M3 budget write-back through ``BUS100MI`` (reference §7.1, pinned contract), query before post.

Per division of the lines:

1. ``GetBudgetHeader`` (DIVI, BUNO, BVER); missing -> ``AddBudgetHeader`` (dry run: reported only);
2. ``LstBudPeriodVal`` for the whole version (``maxrecs=0``) -> ``(AIT1, AIT<cc>, CUCD, BUPE) -> BCUA``;
3. per line: absent -> ``AddBudgetLnPer``; different -> ``UpdBudgetLnPer``; equal -> unchanged;
4. bulk POSTs of at most ``bulk_size`` transactions; per-result errors are inspected: an ``Add`` that
   finds the record already there is retried as ``Upd`` (and an ``Upd`` of a missing one as ``Add``);
   when a bulk call fails without an answer (it may or may not have been applied), the version is
   read again and the lines are classified by what is really there.

So a rerun posts nothing twice: the second run reports every line ``unchanged``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ml_connector.infor.budgets import (
    BudgetLineOutcome,
    BudgetLines,
    BudgetWriteReport,
    Outcome,
    check_version,
    iterate,
    quantize,
)
from ml_connector.infor.errors import BudgetWriteError, GatewayError, M3Error
from ml_connector.infor.mapping import EPOCH, BadField, Row, SourceRecordError, convert, decimal, key, text
from ml_connector.records import BudgetLine, check_period

if TYPE_CHECKING:
    from ml_connector.infor.m3 import M3ProductLine

PROGRAM = "BUS100MI"
CellKey = tuple[str, str, str, str]  # AIT1, AIT<cc>, CUCD, BUPE


def _missing(error: M3Error) -> bool:
    text_ = error.error_message.lower()
    return "not exist" in text_ or "not found" in text_ or "does not exist" in text_


def _exists(error: M3Error) -> bool:
    return "already exist" in error.error_message.lower()


def bupe(period: str) -> str:
    return period.replace("-", "")


def period_of_bupe(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}"


@dataclass
class _Planned:
    line: BudgetLine
    amount: Decimal
    cell: CellKey
    previous: Decimal | None
    action: str  # "AddBudgetLnPer" | "UpdBudgetLnPer" | "" (unchanged)


class M3Budgets:
    def __init__(self, product: M3ProductLine) -> None:
        self.product = product
        self.api = product.api
        self.options = product.options
        self.cc_field = f"AIT{self.options.cost_center_dimension}"

    def _template(self, version: str) -> str:
        return self.options.budget_versions.get(version, version)

    def _bver(self, version: str, period: str) -> str:
        """The BVER of ``version`` for a line of ``period`` (``{year}`` in the mapping: one version per year)."""
        return self._template(version).replace("{year}", period[:4])

    def _bver_pattern(self, version: str) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self._template(version)).replace(r"\{year\}", r"\d{4}") + "$")

    def _buno(self) -> str:
        if not self.options.budget_number:
            raise BudgetWriteError(
                "M3 budget write-back needs M3Options.budget_number (the BUS100MI budget number, BUNO) "
                "of a budget the connector owns"
            )
        return self.options.budget_number

    async def _existing(self, division: str, buno: str, bver: str) -> dict[CellKey, Decimal] | None:
        """The version's period values, or None when the budget header does not exist."""
        try:
            rows = await self.api.execute(
                PROGRAM, "LstBudPeriodVal", {"DIVI": division, "BUNO": buno, "BVER": bver}, maxrecs=0
            )
        except M3Error as exc:
            if _missing(exc):
                return None
            raise
        cells: dict[CellKey, Decimal] = {}
        for row in rows:
            try:
                amount = decimal(row, "BCUA")
            except ValueError:
                continue  # an unreadable existing value compares unequal: the line is updated
            cell = (row.get("AIT1", ""), row.get(self.cc_field, ""), row.get("CUCD", ""), row.get("BUPE", ""))
            cells[cell] = amount
        return cells

    async def _header_exists(self, division: str, buno: str, bver: str) -> bool:
        try:
            await self.api.execute(PROGRAM, "GetBudgetHeader", {"DIVI": division, "BUNO": buno, "BVER": bver})
        except M3Error as exc:
            if _missing(exc):
                return False
            raise BudgetWriteError(f"M3 budget {division}/{buno}/{bver}: cannot read the header: {exc}") from exc
        return True

    async def _add_header(self, division: str, buno: str, bver: str, periods: Sequence[str]) -> None:
        first, last = min(periods), max(periods)
        span = (int(last[:4]) - int(first[:4])) * 12 + int(last[5:7]) - int(first[5:7]) + 1
        try:
            await self.api.execute(
                PROGRAM,
                "AddBudgetHeader",
                {
                    "DIVI": division,
                    "BUNO": buno,
                    "BVER": bver,
                    "TX40": self.options.budget_description[:40],
                    "BSPR": bupe(first),
                    "CRTP": self.options.budget_exchange_rate_type,
                    "NPAM": max(span, self.options.budget_periods),
                },
            )
        except M3Error as exc:
            if not _exists(exc):
                raise BudgetWriteError(f"M3 budget {division}/{buno}/{bver}: cannot add the header: {exc}") from exc

    # -- write ---------------------------------------------------------------------------------

    async def write(self, lines: BudgetLines, *, version: str, dry_run: bool) -> BudgetWriteReport:
        buno = self._buno()
        report = BudgetWriteReport("M3", version, dry_run)
        decimals = self.options.amount_decimals
        by_division: dict[tuple[str, str], dict[CellKey, _Planned]] = {}
        cc_divisions: dict[str, str] | None = None
        async for line in iterate(lines):
            target = f"M3 {PROGRAM} ?/{buno}/{self._template(version)}"
            refusal = check_version(line, version)
            if refusal is None:
                try:
                    check_period(line.period)
                except ValueError as exc:
                    refusal = str(exc)
            if refusal is None and not line.account:
                refusal = "empty account"
            division = self.options.budget_division
            if refusal is None and division is None:
                if cc_divisions is None:
                    cc_divisions = await self.product.cost_center_divisions()
                division = cc_divisions.get(line.cost_center)
                if division is None:
                    refusal = (
                        f"cost center {line.cost_center!r} is not an M3 accounting dimension {self.cc_field[3:]} value"
                    )
            if refusal is not None or division is None:
                report.add(BudgetLineOutcome(line, "failed", target, reason=refusal or "no division"))
                continue
            amount = quantize(line.amount, decimals)
            # a line without a currency is in the division's local currency (Anaplan exports carry none)
            currency = line.currency or await self.product.division_currency(division)
            if not currency:
                reason = f"no currency given and none found for division {division}"
                report.add(BudgetLineOutcome(line, "failed", f"M3 {PROGRAM} {division}/{buno}", reason=reason))
                continue
            cell = (line.account, line.cost_center, currency, bupe(line.period))
            bver = self._bver(version, line.period)
            planned = by_division.setdefault((division, bver), {})
            if cell in planned:
                report.add(BudgetLineOutcome(line, "failed", f"M3 {PROGRAM} {division}/{buno}/{bver}",
                                             reason="duplicate of an earlier line for the same cell"))  # fmt: skip
                continue
            planned[cell] = _Planned(line, amount, cell, None, "")
        for division, bver in sorted(by_division):
            planned_cells = list(by_division[(division, bver)].values())
            await self._write_division(report, division, buno, bver, planned_cells, dry_run)
        return report

    async def _write_division(
        self, report: BudgetWriteReport, division: str, buno: str, bver: str, planned: list[_Planned], dry_run: bool
    ) -> None:
        target = f"M3 {PROGRAM} {division}/{buno}/{bver}"
        if not await self._header_exists(division, buno, bver):
            if dry_run:
                report.notes.append(f"{target}: the budget header would be added")
            else:
                await self._add_header(division, buno, bver, [p.line.period for p in planned])
                report.notes.append(f"{target}: budget header added")
            existing: dict[CellKey, Decimal] = {}
        else:
            existing = await self._existing(division, buno, bver) or {}
        to_send: list[_Planned] = []
        for item in planned:
            item.previous = existing.get(item.cell)
            if item.previous is None:
                item.action = "AddBudgetLnPer"
            elif item.previous == item.amount:
                report.add(BudgetLineOutcome(item.line, "unchanged", target, item.previous))
                continue
            else:
                item.action = "UpdBudgetLnPer"
            if dry_run:
                outcome: Outcome = "added" if item.action == "AddBudgetLnPer" else "updated"
                report.add(BudgetLineOutcome(item.line, outcome, target, item.previous, reason="dry run"))
            else:
                to_send.append(item)
        if dry_run or not to_send:
            return
        uncertain: list[_Planned] = []
        size = self.options.bulk_size
        for start in range(0, len(to_send), size):
            chunk = to_send[start : start + size]
            retry: list[_Planned] = []
            try:
                results = await self.api.execute_bulk(
                    PROGRAM, [(p.action, self._record(division, buno, bver, p)) for p in chunk], division=division
                )
            except (GatewayError, M3Error) as exc:
                for item in chunk:
                    item.action = f"uncertain: {exc}"
                uncertain.extend(chunk)
                continue
            for item, result in zip(chunk, results, strict=True):
                if result.ok:
                    self._done(report, item, target)
                elif result.error is not None and (
                    (item.action == "AddBudgetLnPer" and _exists(result.error))
                    or (item.action == "UpdBudgetLnPer" and _missing(result.error))
                ):
                    item.action = "UpdBudgetLnPer" if item.action == "AddBudgetLnPer" else "AddBudgetLnPer"
                    retry.append(item)
                else:
                    report.add(BudgetLineOutcome(item.line, "failed", target, item.previous, reason=str(result.error)))
            if retry:
                try:
                    results = await self.api.execute_bulk(
                        PROGRAM, [(p.action, self._record(division, buno, bver, p)) for p in retry], division=division
                    )
                except (GatewayError, M3Error) as exc:
                    for item in retry:
                        item.action = f"uncertain: {exc}"
                    uncertain.extend(retry)
                    continue
                for item, result in zip(retry, results, strict=True):
                    if result.ok:
                        self._done(report, item, target)
                    else:
                        report.add(
                            BudgetLineOutcome(item.line, "failed", target, item.previous, reason=str(result.error))
                        )
        if uncertain:
            await self._settle(report, division, buno, bver, uncertain, target)

    async def _settle(
        self, report: BudgetWriteReport, division: str, buno: str, bver: str, items: list[_Planned], target: str
    ) -> None:
        """Bulk calls that failed without an answer: read back and report what is really there."""
        try:
            now = await self._existing(division, buno, bver) or {}
        except (GatewayError, M3Error) as exc:
            for item in items:
                report.add(BudgetLineOutcome(item.line, "failed", target, item.previous,
                                             reason=f"{item.action}; reading back failed too: {exc}"))  # fmt: skip
            return
        for item in items:
            if now.get(item.cell) == item.amount:
                self._done(report, item, target)
            else:
                report.add(BudgetLineOutcome(item.line, "failed", target, item.previous, reason=item.action))

    @staticmethod
    def _done(report: BudgetWriteReport, item: _Planned, target: str) -> None:
        outcome: Outcome = "added" if item.previous is None else "updated"
        report.add(BudgetLineOutcome(item.line, outcome, target, item.previous))

    def _record(self, division: str, buno: str, bver: str, item: _Planned) -> dict[str, str | int | None]:
        account, cost_center, currency, period = item.cell
        return {
            "DIVI": division,
            "BUNO": buno,
            "BVER": bver,
            "AIT1": account,
            self.cc_field: cost_center,
            "CUCD": currency,
            "BUPE": period,
            "BCUA": format(item.amount, "f"),
        }

    # -- read ----------------------------------------------------------------------------------

    async def read(
        self, version: str, *, periods: Collection[str] | None
    ) -> AsyncGenerator[BudgetLine | SourceRecordError, None]:
        buno = self._buno()
        wanted = {bupe(p) for p in periods} if periods is not None else None
        if self.options.budget_division:
            divisions = [self.options.budget_division]
        elif self.options.divisions:
            divisions = list(self.options.divisions)
        else:
            divisions = sorted(set((await self.product.cost_center_divisions()).values()))
        cc_field = self.cc_field

        def build(row: Row) -> BudgetLine:
            value = key(row, "BUPE")
            if len(value) != 6 or not value.isdigit():
                raise BadField("BUPE", value, "not a budget period of the form YYYYMM")
            return BudgetLine(version=version, account=key(row, "AIT1"), cost_center=text(row, cc_field),
                              period=period_of_bupe(value), currency=text(row, "CUCD"),
                              amount=decimal(row, "BCUA"), changed_at=EPOCH)  # fmt: skip

        for division in divisions:
            for bver in await self._versions(division, buno, version, wanted):
                try:
                    rows = await self.api.execute(
                        PROGRAM, "LstBudPeriodVal", {"DIVI": division, "BUNO": buno, "BVER": bver}, maxrecs=0
                    )
                except M3Error as exc:
                    if _missing(exc):
                        continue
                    raise
                source = f"M3 {PROGRAM}/LstBudPeriodVal {division}/{buno}/{bver}"
                for row in rows:
                    if wanted is not None and row.get("BUPE") not in wanted:
                        continue
                    yield convert("budget_lines", source, row, build, ("AIT1", cc_field, "BUPE"))

    async def _versions(self, division: str, buno: str, version: str, wanted: set[str] | None) -> list[str]:
        """The BVERs holding ``version``: one, or with ``{year}`` the matching headers (``LstBudgetHeader``)."""
        template = self._template(version)
        if "{year}" not in template:
            return [template]
        if wanted is not None:
            return sorted({self._bver(version, p[:4]) for p in wanted})
        pattern = self._bver_pattern(version)
        try:
            headers = await self.api.execute(PROGRAM, "LstBudgetHeader", {"DIVI": division, "BUNO": buno}, maxrecs=0)
        except M3Error as exc:
            if _missing(exc):
                return []
            raise
        return sorted({h["BVER"] for h in headers if pattern.match(h.get("BVER", ""))})
