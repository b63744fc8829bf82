"""Secrets the emulators generate, optionally marked with a recognizable canary.

When ``ML_CONNECTOR_TEST_CANARY`` is set (the test suite sets it), every credential and token the emulators
hand out (Infor client secrets, service-account secret keys, access and refresh tokens; Anaplan passwords,
tokens, refresh tokens, device and authorization codes) starts with its value. The suite then searches logs,
events, statuses, audit rows and exception texts for it: it must never appear. Unset, the values are plain
random tokens.
"""

from __future__ import annotations

import os
import re
import secrets

ENV_CANARY = "ML_CONNECTOR_TEST_CANARY"
_SAFE = re.compile(r"[A-Za-z0-9]{8,64}")


def canary() -> str | None:
    """The canary of this process (letters and digits only, 8-64 of them), or None when there is none."""
    value = os.environ.get(ENV_CANARY, "")
    return value if _SAFE.fullmatch(value) else None


def secret_token(nbytes: int = 24) -> str:
    """``secrets.token_urlsafe(nbytes)``, prefixed with the canary when one is set."""
    token = secrets.token_urlsafe(nbytes)
    mark = canary()
    return f"{mark}{token}" if mark else token
