"""Identifier formats of the Anaplan APIs (reference §1.3).

Users and workspaces: 32 lowercase hex. Models and tasks: 32 uppercase hex. Model objects: 12-digit
numeric strings whose first three digits give the kind (list 101, module 102, import 112, file 113,
export 116, action 117, process 118; line items 206; list items 2xx). Time is ``20000000003`` and
Versions ``20000000020``; version members ``107…``.
"""

from __future__ import annotations

import secrets
import uuid

LIST = 101
MODULE = 102
VERSION_ITEM = 107
IMPORT = 112
FILE = 113
EXPORT = 116
ACTION = 117
PROCESS = 118
LINE_ITEM = 206

TIME_DIMENSION_ID = 20000000003
VERSION_DIMENSION_ID = 20000000020
USERS_DIMENSION_ID = 101999999999
#: time members get ids from here on (reference example ``5438300031``)
TIME_ITEM_BASE = 5438300000


def object_id(prefix: int, index: int) -> int:
    """``object_id(112, 7) == 112000000007``."""
    return prefix * 1_000_000_000 + index


def prefix_of(object_id_: int | str) -> int:
    return int(str(object_id_)[:3])


def lower_hex() -> str:
    return secrets.token_hex(16)


def upper_hex() -> str:
    return secrets.token_hex(16).upper()


def hyphenated_uuid() -> str:
    return str(uuid.uuid4())
