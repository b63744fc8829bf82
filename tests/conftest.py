"""Suite-wide canary secret (issue 7): a recognizable value in every credential, searched for everywhere.

At import this sets ``ML_CONNECTOR_TEST_CANARY`` (kept when already set; subprocesses inherit it), so every
credential and token the emulators generate starts with the canary (:mod:`ml_connector.sandbox.canary`);
tests make their own credentials with the ``canary`` fixture (``canary.secret("password")``). Then, for the
whole session, it watches:

* every log record, formatted with its exception text, from any logger at the level it is emitted, and from
  ``ml_connector`` and ``httpx`` at every level (DEBUG and INFO are tapped without changing what other
  handlers and ``caplog`` receive);
* every test report: the failure text and the captured stdout, stderr and log sections;
* every exception caught by ``pytest.raises`` (its text with its causes);
* at the end, the files the suite left under its base temporary directory that hold logs or audit rows:
  ``*.log`` and ``log.txt`` (the operator and the workers of the Kubernetes tests) and SQLite databases.

The canary is looked for as is, URL- or JSON-escaped (it is letters and digits only) and base64-encoded at
any offset (a Basic ``Authorization`` header). Any sighting fails the session (exit status 1) and is listed
with the test and the place; the canary itself is shown as ``<CANARY>``. The few sightings that are a test's
own doing, not ml-connector's (:data:`EXEMPT`, each with its reason), are listed without failing.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ml_connector.sandbox.canary import ENV_CANARY
from ml_connector.sandbox.canary import canary as current_canary

if current_canary() is None:
    os.environ[ENV_CANARY] = "CANARY" + secrets.token_hex(8).upper()

#: Loggers read at every level (their records reach the other handlers exactly as before).
TAPPED_LOGGERS = ("ml_connector", "httpx")
#: Files left under the base temp dir that must never hold a secret.
LOG_FILE_NAMES = ("log.txt",)
LOG_SUFFIXES = (".log",)
DATABASE_SUFFIXES = (".sqlite3", ".sqlite", ".db", ".sqlite3-wal", ".sqlite-wal", ".db-wal")
_MAX_FILE_BYTES = 256 * 1024 * 1024
_EVERYTHING = 1  # the level tapped loggers get: below DEBUG, so that a test setting DEBUG is told apart
_GATEWAY_REVOKE = "tests/sandbox/test_infor_emulator_gateway.py::test_revoke_kills_the_grant_and_its_access_tokens"
_GET_REVOKE = (
    "the emulator test itself revokes a token with the RFC 7009 GET form (the token in the query string), and httpx"
    " logs that URL at INFO; ml-connector revokes with a POST form body"
)
#: Sightings that are not leaks of ml-connector: (test node id, start of the place) -> why. Listed, not failed.
EXEMPT: dict[tuple[str, str], str] = {
    (_GATEWAY_REVOKE, "log record of httpx"): _GET_REVOKE,
    (_GATEWAY_REVOKE, "captured log"): _GET_REVOKE,
}


class Canary:
    """The canary value and the forms it is searched in."""

    def __init__(self, value: str) -> None:
        self.value = value
        raw = value.encode()
        forms = {raw}
        for offset in range(3):
            encoded = base64.b64encode(b"\0" * offset + raw)
            start = -(-offset * 8 // 6)  # ceil: the first character made of canary bits only
            end = (offset + len(raw)) * 8 // 6  # floor: the last one
            piece = encoded[start:end]
            forms |= {piece, piece.replace(b"+", b"-").replace(b"/", b"_")}
        self.forms = tuple(sorted(forms, key=len))

    def secret(self, label: str = "secret") -> str:
        """A fresh credential value carrying the canary (for a test's own credentials)."""
        return f"{self.value}{label.replace(' ', '-')}{secrets.token_urlsafe(12)}"

    def found(self, text: str | bytes) -> bool:
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        return any(form in data for form in self.forms)

    def excerpt(self, text: str | bytes, width: int = 160) -> str:
        """Where the canary is in ``text``, with the canary masked."""
        data = text if isinstance(text, str) else text.decode("utf-8", "replace")
        for form in self.forms:
            needle = form.decode()
            at = data.find(needle)
            if at >= 0:
                start = max(0, at - width // 2)
                return data[start : at + len(needle) + width // 2].replace(needle, "<CANARY>")
        return ""

    def assert_absent(self, text: str | bytes, where: str) -> None:
        """Fail (naming ``where``) when ``text`` holds the canary in any form."""
        if self.found(text):
            raise AssertionError(f"the canary secret leaked into {where}: ...{self.excerpt(text)}...")


@dataclass
class Finding:
    test: str
    where: str
    excerpt: str
    exempt: str | None = None


@dataclass
class CanaryWatch:
    canary: Canary
    test: str = "(outside any test)"
    findings: list[Finding] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def check(self, text: str | bytes | None, where: str) -> None:
        if not text or not self.canary.found(text):
            return
        key = (self.test, where)
        if key not in self._seen:
            self._seen.add(key)
            exempt = next(
                (why for (test, place), why in EXEMPT.items() if test == self.test and where.startswith(place)), None
            )
            self.findings.append(Finding(self.test, where, self.canary.excerpt(text), exempt))

    @property
    def leaks(self) -> list[Finding]:
        return [f for f in self.findings if f.exempt is None]


_WATCH_KEY = pytest.StashKey[CanaryWatch]()
_WATCHES: list[CanaryWatch] = []  # the session's (one per pytest run in this process)


class _TapHandler(logging.Handler):
    """Checks every record it sees, formatted with its exception and stack."""

    def __init__(self, watch: CanaryWatch) -> None:
        super().__init__(logging.NOTSET)
        self.watch = watch
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
        except Exception:  # a broken format string: check its parts
            parts = [str(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        self.watch.check("\n".join(parts), f"log record of {record.name} ({record.levelname})")


class _Forwarder(logging.Handler):
    """On a tapped logger (propagation off): hands a record on to the root logger's handlers when the logger
    would have let it through without the tap (the first explicitly set level up the chain decides)."""

    def __init__(self, forced: dict[str, int]) -> None:
        super().__init__(logging.NOTSET)
        self.forced = forced

    def _would_emit(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            level = logger.level
            if level and self.forced.get(logger.name) != level:
                return record.levelno >= level
            logger = logger.parent
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._would_emit(record):
            logging.getLogger().handle(record)


def _install_taps(watch: CanaryWatch) -> None:
    tap = _TapHandler(watch)
    root = logging.getLogger()
    root.handlers.insert(0, tap)
    forced: dict[str, int] = {}
    forwarder = _Forwarder(forced)
    for name in TAPPED_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level:  # configured by someone: leave it alone, the root tap sees what it emits
            continue
        forced[name] = _EVERYTHING
        logger.setLevel(_EVERYTHING)
        logger.propagate = False
        logger.addHandler(tap)
        logger.addHandler(forwarder)


def _wrap_raises(watch: CanaryWatch) -> None:
    """Check the text of every exception a ``pytest.raises`` block catches."""
    from _pytest._code.code import ExceptionInfo

    original = getattr(ExceptionInfo, "fill_unfilled", None)
    if original is None or getattr(original, "_canary", False):
        return

    def fill_unfilled(self: Any, exc_info: Any) -> None:
        original(self, exc_info)
        try:
            text = "".join(traceback.format_exception(exc_info[1]))
        except Exception:  # an exception whose str() fails is the test's business
            return
        watch.check(text, f"the text of a {type(exc_info[1]).__name__} caught by pytest.raises")

    fill_unfilled._canary = True  # type: ignore[attr-defined]
    ExceptionInfo.fill_unfilled = fill_unfilled  # type: ignore[method-assign]


def _files(base: Path) -> Iterator[tuple[Path, str]]:
    for path in base.rglob("*"):
        name = path.name
        if name in LOG_FILE_NAMES or name.endswith(LOG_SUFFIXES):
            kind = "log file"
        elif name.endswith(DATABASE_SUFFIXES):
            kind = "database file"
        else:
            continue
        try:
            if path.is_file() and path.stat().st_size <= _MAX_FILE_BYTES:
                yield path, kind
        except OSError:
            continue


def pytest_configure(config: pytest.Config) -> None:
    value = current_canary()
    assert value is not None
    watch = CanaryWatch(Canary(value))
    config.stash[_WATCH_KEY] = watch
    _WATCHES.append(watch)
    _install_taps(watch)
    _wrap_raises(watch)


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _watch().test = nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    watch = _watch()
    watch.test = report.nodeid
    if report.failed:
        watch.check(report.longreprtext, f"the failure report ({report.when})")
    for title, content in report.sections:
        watch.check(content, f"{title.lower()}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    watch = _watch()
    watch.test = "(files left by the suite)"
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None) if factory is not None else None
    if base is not None and Path(base).is_dir():
        for path, kind in _files(Path(base)):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            watch.check(data, f"{kind} {path.relative_to(base)}")
    if watch.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    watch = config.stash.get(_WATCH_KEY, None)
    if watch is None or not watch.findings:
        return
    exempt = [f for f in watch.findings if f.exempt is not None]
    if exempt:
        terminalreporter.section("canary secret: exempted sightings", sep="-")
        for finding in exempt:
            terminalreporter.line(f"- {finding.test}: {finding.where}: {finding.exempt}")
    if not watch.leaks:
        return
    terminalreporter.section("canary secret", sep="=", red=True, bold=True)
    terminalreporter.line(
        f"The canary secret ({len(watch.leaks)} sighting(s)) appeared where no secret may ever be:", red=True
    )
    for finding in watch.leaks:
        terminalreporter.line(f"- {finding.test}: {finding.where}")
        terminalreporter.line(f"    ...{finding.excerpt}...")


def _watch() -> CanaryWatch:
    return _WATCHES[-1]


@pytest.fixture(scope="session")
def canary(pytestconfig: pytest.Config) -> Canary:
    """The session's canary: ``canary.secret(label)`` makes a credential carrying it, ``canary.assert_absent``
    checks an artifact (status, event, audit row, message) for it."""
    return pytestconfig.stash[_WATCH_KEY].canary
