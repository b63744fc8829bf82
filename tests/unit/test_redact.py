from __future__ import annotations

import logging

import pytest

from ml_connector.net.redact import MASK, SecretRegistry


def test_registered_values_are_masked_in_text_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    registry = SecretRegistry()
    registry.add("s3cr3t-value", None, "ab")  # None and too-short values are ignored
    assert registry.redact("token=s3cr3t-value;") == f"token={MASK};"
    assert registry.redact("ab is fine") == "ab is fine"

    logger = logging.getLogger("test.redact")
    handler = logging.StreamHandler()
    handler.addFilter(registry)
    caplog.handler.addFilter(registry)
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("password is %s", "s3cr3t-value")
    assert "s3cr3t-value" not in caplog.text
    assert MASK in caplog.text
