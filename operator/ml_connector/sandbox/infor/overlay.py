"""Late changes on top of the generated dataset: modified and added records with newer change stamps.

The base :class:`~ml_connector.sandbox.dataset.Dataset` is immutable and derived on the fly; this overlay
keeps only what changed (a few dicts), so iteration stays lazy and seeks stay arithmetic. Every change is
stamped by :meth:`LiveData.next_stamp`, strictly later than every base stamp and every earlier change,
so incremental reads (``LMTS``, ``EGLMDT >=``, ``RecordDate >=``, ``_fts``) pick it up.

All emulated products (M3, SyteLine, FSM) read the same company through one ``LiveData``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ml_connector.sandbox import dataset as ds
from ml_connector.sandbox.dataset import (
    BLOCK,
    Account,
    CostCenter,
    Dataset,
    Invoice,
    Item,
    Party,
    Payment,
    POLine,
    Posting,
    Segment,
)

PostingKey = tuple[str, int, int, int]  # division, year, journal, line
JournalKey = tuple[str, int, int]  # division, year, journal


class AddedJournal(NamedTuple):
    journal: int
    postings: tuple[Posting, ...]
    invoice: Invoice | None


class MutationError(ValueError):
    """A late change that cannot be applied (unknown record, bad value); the message says which."""


def _date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        text = value.strip()
        if len(text) == 8 and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return dt.date.fromisoformat(text)
    except ValueError:
        raise MutationError(f"date {value!r} is neither YYYY-MM-DD nor YYYYMMDD") from None


def _cents(value: int | str | float) -> int:
    if isinstance(value, int):
        return value * 100
    try:
        return ds.parse_cents(str(value))
    except (ValueError, ArithmeticError):
        raise MutationError(f"amount {value!r} is not a decimal number") from None


class _Master:
    """A small keyed table kept sorted by key (suppliers, customers, items, accounts, cost centers)."""

    def __init__(self, rows: tuple[Any, ...], key: Callable[[Any], str]) -> None:
        self._key = key
        self.rows: dict[str, Any] = {key(r): r for r in rows}
        self.keys = sorted(self.rows)
        self.changed: set[str] = set()

    def get(self, key: str) -> Any:
        return self.rows.get(key)

    def put(self, row: Any) -> None:
        key = self._key(row)
        if key not in self.rows:
            bisect.insort(self.keys, key)
        self.rows[key] = row
        self.changed.add(key)

    def scan(self, after: str | None = None) -> Iterator[Any]:
        start = 0 if after is None else bisect.bisect_right(self.keys, after)
        for key in self.keys[start:]:
            yield self.rows[key]

    def __len__(self) -> int:
        return len(self.keys)


class LiveData:
    """The dataset as the emulators serve it: base rows, overridden by late changes, plus added records."""

    def __init__(self, dataset: Dataset, now: Callable[[], dt.datetime] | None = None) -> None:
        self.ds = dataset
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._last_stamp = dataset.max_stamp
        self._lock = threading.Lock()
        self.suppliers = _Master(dataset.suppliers, lambda r: r.id)
        self.customers = _Master(dataset.customers, lambda r: r.id)
        self.items = _Master(dataset.items, lambda r: r.id)
        self.accounts = _Master(dataset.accounts, lambda r: r.code)
        self.cost_centers = _Master(dataset.cost_centers, lambda r: r.code)
        self.posting_overrides: dict[PostingKey, Posting] = {}
        self.invoice_overrides: dict[JournalKey, Invoice] = {}
        self.po_overrides: dict[tuple[str, int], POLine] = {}
        self.added: dict[int, list[AddedJournal]] = {}
        self.site_added: dict[str, list[AddedJournal]] = {}
        #: keys of rows changed or added after the base stamp, per entity (fast path for incremental reads)
        self.changed_postings: set[PostingKey] = set()
        self.changed_invoices: set[JournalKey] = set()
        self.changed_po_lines: set[tuple[str, int]] = set()
        self.version = 0  # bumped on every change

    # ------------------------------------------------------------------------------------------ stamps

    def next_stamp(self) -> dt.datetime:
        """A change stamp later than every base stamp and every earlier change (millisecond resolution)."""
        now = self._now().astimezone(dt.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        stamp = max(now, self._last_stamp + dt.timedelta(milliseconds=1))
        self._last_stamp = stamp
        return stamp

    @property
    def last_stamp(self) -> dt.datetime:
        return self._last_stamp

    @property
    def has_changes(self) -> bool:
        return self.version > 0

    # ------------------------------------------------------------------------------------------ GL

    def site_journal_count(self, plant: str) -> int:
        return self.ds.site_journals(plant) + len(self.site_added.get(plant, ()))

    def segment_journal_count(self, seg: Segment) -> int:
        return seg.journals + len(self.added.get(seg.number, ()))

    def posting(self, seg: Segment, n: int, line: int) -> Posting:
        if n > seg.journals:
            added = self.added.get(seg.number, [])
            k = n - seg.journals - 1
            if k >= len(added) or not 1 <= line <= len(added[k].postings):
                raise KeyError(f"no GL line {seg.plant.code}/{seg.year}/{n}/{line}")
            return self.posting_overrides.get((seg.plant.code, seg.year, n, line), added[k].postings[line - 1])
        if n < 1 or line not in (1, 2):
            raise KeyError(f"no GL line {seg.plant.code}/{seg.year}/{n}/{line}")
        base = self.ds.posting(seg, n, line)
        if self.posting_overrides:
            return self.posting_overrides.get((base.division, base.year, n, line), base)
        return base

    def gl_segment(self, seg: Segment, first_journal: int = 1, last_journal: int | None = None) -> Iterator[Posting]:
        """Postings of one (division, year) in key order (journal, line), from ``first_journal`` on."""
        total = self.segment_journal_count(seg)
        stop = total if last_journal is None else min(total, last_journal)
        n = max(1, first_journal)
        base_stop = min(stop, seg.journals)
        overrides = self.posting_overrides
        posting = self.ds.posting
        while n <= base_stop:
            p1, p2 = posting(seg, n, 1), posting(seg, n, 2)
            if overrides:
                p1 = overrides.get((p1.division, p1.year, n, 1), p1)
                p2 = overrides.get((p2.division, p2.year, n, 2), p2)
            yield p1
            yield p2
            n += 1
        added = self.added.get(seg.number, [])
        while n <= stop:
            for p in added[n - seg.journals - 1].postings:
                yield overrides.get((p.division, p.year, p.journal, p.line), p) if overrides else p
            n += 1

    def gl_site(self, plant: str, first_serial: int = 1) -> Iterator[Posting]:
        """Postings of one site by site-wide serial (SyteLine ``TransNum``), from ``first_serial`` on."""
        journal_serial = (max(1, first_serial) - 1) // 2 + 1
        skip_first_line = max(1, first_serial) % 2 == 0
        located = self.ds.site_locate(plant, journal_serial)
        if located is not None:
            seg0, n0 = located
            for seg in self.ds.site_segments(plant):
                if seg.year < seg0.year:
                    continue
                start = n0 if seg is seg0 else 1
                for p in self.gl_segment(seg, start, seg.journals):
                    if skip_first_line:
                        skip_first_line = False
                        continue
                    yield p
            base_journals = 0
        else:
            base_journals = journal_serial - self.ds.site_journals(plant) - 1
        for added in self.site_added.get(plant, [])[max(0, base_journals) :]:
            for p in added.postings:
                current = self.posting_overrides.get((p.division, p.year, p.journal, p.line), p)
                if current.serial >= first_serial:
                    yield current

    def changed_gl(self) -> list[Posting]:
        """Every changed or added posting (current values), in company key order."""
        out = []
        for key in sorted(self.changed_postings):
            seg = self.ds.segment(key[0], key[1])
            out.append(self.posting(seg, key[2], key[3]))
        return out

    # ------------------------------------------------------------------------------------------ AP

    def invoice(self, seg: Segment, n: int) -> Invoice:
        key = (seg.plant.code, seg.year, n)
        if key in self.invoice_overrides:
            return self.invoice_overrides[key]
        if n > seg.journals:
            added = self.added.get(seg.number, [])
            k = n - seg.journals - 1
            if 0 <= k < len(added) and added[k].invoice is not None:
                inv = added[k].invoice
                assert inv is not None
                return inv
            raise KeyError(f"journal {n} of {seg.plant.code}/{seg.year} is not a supplier invoice")
        return self.ds.invoice(seg, n)

    def payment(self, seg: Segment, n: int) -> Payment:
        p = self.ds.payment(seg, n)
        inv_key = (seg.plant.code, seg.year, p.invoice_journal)
        if inv_key in self.invoice_overrides:  # a payment pays what the invoice says now
            inv = self.invoice_overrides[inv_key]
            p = p._replace(amount=inv.amount, changed=max(p.changed, inv.changed))
        return p

    def ap_segment(self, seg: Segment, first_journal: int = 1) -> Iterator[Invoice | Payment]:
        """Invoices and payments of one (division, year) in voucher (journal) order."""
        kind = self.ds._kind
        n = max(1, first_journal)
        while n <= seg.journals:
            if (n - 1) % BLOCK < 3:
                yield self.invoice(seg, n)
            elif kind(seg, n) == "payment":
                yield self.payment(seg, n)
            n += 1
        for added in self.added.get(seg.number, [])[max(0, n - seg.journals - 1) :]:
            if added.invoice is not None:
                yield self.invoice(seg, added.journal)

    def invoices_site(self, plant: str, first_serial: int = 1) -> Iterator[Invoice]:
        located = self.ds.site_locate(plant, max(1, first_serial))
        if located is not None:
            seg0, n0 = located
            for seg in self.ds.site_segments(plant):
                if seg.year < seg0.year:
                    continue
                n = n0 if seg is seg0 else 1
                while n <= seg.journals:
                    if (n - 1) % BLOCK < 3:
                        yield self.invoice(seg, n)
                    n += 1
        for added in self.site_added.get(plant, []):
            if added.invoice is not None and added.invoice.serial >= first_serial:
                seg = self.ds.segment(plant, added.invoice.year)
                yield self.invoice(seg, added.journal)

    def payments_site(self, plant: str, first_serial: int = 1) -> Iterator[Payment]:
        located = self.ds.site_locate(plant, max(1, first_serial))
        if located is None:
            return
        seg0, n0 = located
        for seg in self.ds.site_segments(plant):
            if seg.year < seg0.year:
                continue
            n = n0 if seg is seg0 else 1
            while n <= seg.journals:
                if (n - 1) % BLOCK >= 3 and self.ds.is_payment(seg, n):
                    yield self.payment(seg, n)
                n += 1

    def changed_invoices_list(self) -> list[Invoice]:
        return [self.invoice(self.ds.segment(k[0], k[1]), k[2]) for k in sorted(self.changed_invoices)]

    def changed_payments_list(self) -> list[Payment]:
        """Payments whose invoice changed (their amount follows the invoice)."""
        out = []
        for div, year, inv_n in sorted(self.changed_invoices):
            seg = self.ds.segment(div, year)
            if inv_n > seg.journals or (inv_n - 1) % BLOCK >= 3:
                continue
            pay_n = inv_n + seg.lag_blocks * BLOCK + 3
            if pay_n <= seg.journals and self.ds.is_payment(seg, pay_n):
                out.append(self.payment(seg, pay_n))
        return out

    # ------------------------------------------------------------------------------------------ POs

    def po_lines_segment(self, seg: Segment, first_block: int = 0) -> Iterator[POLine]:
        overrides = self.po_overrides
        for block in range(max(0, first_block), self.ds.blocks(seg)):
            for line in self.ds.po_lines_of_block(seg, block):
                yield overrides.get((line.po_number, line.line), line) if overrides else line

    def po_lines_of(self, po_number: str) -> list[POLine]:
        located = self.ds.parse_po_number(po_number)
        if located is None:
            return []
        seg, block = located
        return [self.po_overrides.get((p.po_number, p.line), p) for p in self.ds.po_lines_of_block(seg, block)]

    def changed_po_list(self) -> list[POLine]:
        return [self.po_overrides[k] for k in sorted(self.changed_po_lines)]

    # ------------------------------------------------------------------------------------------ mutations

    def _bump(self) -> None:
        self.version += 1

    def _set_posting(self, seg: Segment, p: Posting) -> None:
        key = (p.division, p.year, p.journal, p.line)
        self.posting_overrides[key] = p
        self.changed_postings.add(key)
        del seg  # the key carries the segment

    def update_posting(
        self,
        division: str,
        year: int,
        journal: int,
        line: int,
        *,
        amount: int | str | float | None = None,
        account: str | None = None,
        cost_center: str | None = None,
        text: str | None = None,
    ) -> Posting:
        """Change one GL line (e.g. its amount); it gets a new change stamp."""
        with self._lock:
            seg = self._segment(division, year)
            try:
                current = self.posting(seg, int(journal), int(line))
            except KeyError as exc:
                raise MutationError(str(exc.args[0])) from None
            changes: dict[str, Any] = {"changed": self.next_stamp()}
            if amount is not None:
                changes["amount"] = _cents(amount)
            if account is not None:
                changes["account"] = self._account(account)
            if cost_center is not None:
                changes["cost_center"] = self._cost_center(cost_center, division)
            if text is not None:
                changes["text"] = text
            updated = current._replace(**changes)
            self._set_posting(seg, updated)
            self._bump()
            return updated

    def add_posting(
        self,
        division: str,
        date: dt.date | str,
        account: str,
        cost_center: str,
        amount: int | str | float,
        text: str = "Late adjustment",
        counter_account: str = "2200",
    ) -> tuple[Posting, ...]:
        """Add a balanced journal (the line plus a counter line on ``counter_account``) dated ``date``."""
        with self._lock:
            day = _date(date)
            seg = self._segment(division, day.year)
            cents = _cents(amount)
            account = self._account(account)
            cost_center = self._cost_center(cost_center, division)
            counter_account = self._account(counter_account)
            stamp = self.next_stamp()
            n, serial = self._next_journal(seg)
            finance_cc = f"CC{seg.plant.digit}010"
            lines = (
                Posting(division, seg.year, n, 1, account, cost_center, day, cents, seg.plant.currency, "00", "GL",
                        text, 2 * serial - 1, stamp),
                Posting(division, seg.year, n, 2, counter_account, finance_cc, day, -cents, seg.plant.currency,
                        "00", "GL", text, 2 * serial, stamp),
            )  # fmt: skip
            self._append(seg, AddedJournal(n, lines, None))
            self._bump()
            return lines

    def add_invoice(
        self,
        division: str,
        date: dt.date | str,
        supplier: str,
        account: str,
        cost_center: str,
        amount: int | str | float,
        number: str | None = None,
        due_days: int = 30,
    ) -> Invoice:
        """Add a posted supplier invoice with its GL journal (expense line TRCD 40 + AP counter line)."""
        with self._lock:
            day = _date(date)
            seg = self._segment(division, day.year)
            if self.suppliers.get(supplier) is None:
                raise MutationError(f"unknown supplier {supplier!r}")
            cents = _cents(amount)
            account = self._account(account)
            cost_center = self._cost_center(cost_center, division)
            stamp = self.next_stamp()
            n, serial = self._next_journal(seg)
            number = number or f"INV{seg.plant.digit}{seg.year % 100:02d}{n:07d}"
            text = f"{supplier} {number}"
            finance_cc = f"CC{seg.plant.digit}010"
            inv = Invoice(division, seg.year, n, serial, supplier, number, day, day, day + dt.timedelta(days=due_days),
                          account, cost_center, cents, seg.plant.currency, "", stamp)  # fmt: skip
            lines = (
                Posting(division, seg.year, n, 1, account, cost_center, day, cents, seg.plant.currency, "40", "AP",
                        text, 2 * serial - 1, stamp),
                Posting(division, seg.year, n, 2, "2100", finance_cc, day, -cents, seg.plant.currency, "41", "AP",
                        text, 2 * serial, stamp),
            )  # fmt: skip
            self._append(seg, AddedJournal(n, lines, inv))
            self.changed_invoices.add((division, seg.year, n))
            self._bump()
            return inv

    def update_invoice(
        self,
        division: str,
        year: int,
        journal: int,
        *,
        amount: int | str | float | None = None,
        account: str | None = None,
        cost_center: str | None = None,
        due_date: dt.date | str | None = None,
    ) -> Invoice:
        """Change a posted supplier invoice; its GL lines (and its payment's amount) follow."""
        with self._lock:
            seg = self._segment(division, year)
            try:
                current = self.invoice(seg, int(journal))
            except KeyError as exc:
                raise MutationError(str(exc.args[0])) from None
            stamp = self.next_stamp()
            changes: dict[str, Any] = {"changed": stamp}
            if amount is not None:
                changes["amount"] = _cents(amount)
            if account is not None:
                changes["account"] = self._account(account)
            if cost_center is not None:
                changes["cost_center"] = self._cost_center(cost_center, division)
            if due_date is not None:
                changes["due_date"] = _date(due_date)
            updated = current._replace(**changes)
            key = (division, seg.year, updated.journal)
            self.invoice_overrides[key] = updated
            self.changed_invoices.add(key)
            line1 = self.posting(seg, updated.journal, 1)
            line2 = self.posting(seg, updated.journal, 2)
            self._set_posting(seg, line1._replace(amount=updated.amount, account=updated.account,
                                                  cost_center=updated.cost_center, changed=stamp))  # fmt: skip
            self._set_posting(seg, line2._replace(amount=-updated.amount, changed=stamp))
            if updated.journal <= seg.journals and (updated.journal - 1) % BLOCK < 3:
                pay_n = updated.journal + seg.lag_blocks * BLOCK + 3
                if pay_n <= seg.journals and self.ds.is_payment(seg, pay_n):
                    for line in (1, 2):
                        p = self.posting(seg, pay_n, line)
                        sign = 1 if line == 1 else -1
                        self._set_posting(seg, p._replace(amount=sign * updated.amount, changed=stamp))
            self._bump()
            return updated

    def update_po_line(
        self, po_number: str, line: int, *, quantity: int | None = None, unit_price: int | str | float | None = None
    ) -> POLine:
        with self._lock:
            lines = {p.line: p for p in self.po_lines_of(po_number)}
            if int(line) not in lines:
                raise MutationError(f"no purchase order line {po_number}/{line}")
            current = lines[int(line)]
            qty = int(quantity) if quantity is not None else current.quantity
            price = _cents(unit_price) if unit_price is not None else current.unit_price
            updated = current._replace(quantity=qty, unit_price=price, amount=qty * price, changed=self.next_stamp())
            key = (po_number, int(line))
            self.po_overrides[key] = updated
            self.changed_po_lines.add(key)
            self._bump()
            return updated

    def update_supplier(self, supplier: str, **changes: Any) -> Party:
        return self._update_party(self.suppliers, "supplier", supplier, changes)

    def update_customer(self, customer: str, **changes: Any) -> Party:
        return self._update_party(self.customers, "customer", customer, changes)

    def add_supplier(self, supplier: str, name: str, country: str = "US", currency: str = "USD") -> Party:
        return self._add_party(self.suppliers, "supplier", supplier, name, country, currency)

    def add_customer(self, customer: str, name: str, country: str = "US", currency: str = "USD") -> Party:
        return self._add_party(self.customers, "customer", customer, name, country, currency)

    def update_item(self, item: str, **changes: Any) -> Item:
        with self._lock:
            current = self.items.get(item)
            if current is None:
                raise MutationError(f"unknown item {item!r}")
            allowed = {"description", "status", "type"}
            self._check_fields("item", changes, allowed)
            updated: Item = current._replace(**changes, changed=self.next_stamp())
            self.items.put(updated)
            self._bump()
            return updated

    def add_account(self, account: str, name: str, type: str = "Expense") -> Account:
        with self._lock:
            if self.accounts.get(account) is not None:
                raise MutationError(f"account {account!r} already exists")
            if type not in ("Revenue", "COGS", "Expense", "Asset", "Liability", "Equity"):
                raise MutationError(f"account type {type!r} is not Revenue|COGS|Expense|Asset|Liability|Equity")
            row = Account(account, name, type, self.next_stamp())
            self.accounts.put(row)
            self._bump()
            return row

    def update_account(self, account: str, **changes: Any) -> Account:
        with self._lock:
            current = self.accounts.get(account)
            if current is None:
                raise MutationError(f"unknown account {account!r}")
            self._check_fields("account", changes, {"name", "type"})
            updated: Account = current._replace(**changes, changed=self.next_stamp())
            self.accounts.put(updated)
            self._bump()
            return updated

    def add_cost_center(self, cost_center: str, name: str, plant: str) -> CostCenter:
        with self._lock:
            if self.cost_centers.get(cost_center) is not None:
                raise MutationError(f"cost center {cost_center!r} already exists")
            if plant not in self.ds.plant_by_code:
                raise MutationError(f"unknown plant {plant!r}")
            row = CostCenter(cost_center, name, plant, self.next_stamp())
            self.cost_centers.put(row)
            self._bump()
            return row

    # ------------------------------------------------------------------------------------------ helpers

    def _update_party(self, table: _Master, what: str, key: str, changes: dict[str, Any]) -> Party:
        with self._lock:
            current = table.get(key)
            if current is None:
                raise MutationError(f"unknown {what} {key!r}")
            self._check_fields(what, changes, {"name", "status", "country", "currency"})
            if "status" in changes and changes["status"] not in ("active", "inactive"):
                raise MutationError(f"{what} status must be 'active' or 'inactive', not {changes['status']!r}")
            updated: Party = current._replace(**changes, changed=self.next_stamp())
            table.put(updated)
            self._bump()
            return updated

    def _add_party(self, table: _Master, what: str, key: str, name: str, country: str, currency: str) -> Party:
        with self._lock:
            if table.get(key) is not None:
                raise MutationError(f"{what} {key!r} already exists")
            row = Party(key, name, country, currency, "active", self.next_stamp())
            table.put(row)
            self._bump()
            return row

    @staticmethod
    def _check_fields(what: str, changes: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise MutationError(
                f"cannot change {what} field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )

    def _segment(self, division: str, year: int) -> Segment:
        try:
            return self.ds.segment(division, int(year))
        except KeyError as exc:
            raise MutationError(str(exc.args[0])) from None

    def _account(self, account: str) -> str:
        if self.accounts.get(account) is None:
            raise MutationError(f"unknown GL account {account!r}")
        return account

    def _cost_center(self, cost_center: str, division: str) -> str:
        row = self.cost_centers.get(cost_center)
        if row is None:
            raise MutationError(f"unknown cost center {cost_center!r}")
        if row.plant != division:
            raise MutationError(f"cost center {cost_center!r} belongs to plant {row.plant}, not {division}")
        return cost_center

    def _next_journal(self, seg: Segment) -> tuple[int, int]:
        n = self.segment_journal_count(seg) + 1
        serial = self.site_journal_count(seg.plant.code) + 1
        return n, serial

    def _append(self, seg: Segment, journal: AddedJournal) -> None:
        self.added.setdefault(seg.number, []).append(journal)
        self.site_added.setdefault(seg.plant.code, []).append(journal)
        for p in journal.postings:
            self.changed_postings.add((p.division, p.year, p.journal, p.line))
