"""Emulated Anaplan: authentication, OAuth 2.0 and the Integration API v2.0 (bulk and transactional).

``AnaplanEmulator(state).app()`` is an aiohttp application serving ``/token/*``, ``/oauth/*``,
``/auth/*`` and ``/2/0/*`` from one base URL; :func:`build_default_model` seeds the demo model;
:class:`ModelBuilder` builds others; ``ml_connector.sandbox.server.start_anaplan`` runs it on loopback.
Behaviour follows ``shared/reference/anaplan-api.md``. Where the reference leaves a gap, the emulator
chose (each choice is also noted where it is implemented):

* a transactional call (list items, cell writes, view reads) on a model that runs a task answers
  **409** with the error envelope; a task started on a busy model is accepted and queued (FIFO);
* a model the caller cannot see is **404** everywhere, including ``GET /models/{id}`` and task lists;
* the 401 body of ``/2/0`` is the usual error envelope (``Unauthorized``);
* module imports report a ``moduleRowsProcessed`` detail (shaped like ``hierarchyRowsProcessed``);
  rejected rows count as ``ignoredCount``/``invalidCount``; empty line-item values leave a cell as is;
* list-item failure types beyond ``INCORRECT_FORMAT``/``INCOMPLETE_DATA`` are ``DUPLICATE_NAME``,
  ``DUPLICATE_CODE`` and ``ITEM_NOT_FOUND``; deleting an unknown item is not a failure;
* ``GET …/lists/{id}/items`` returns every item unless ``limit``/``offset`` are given (the SDK reads
  it without paging); other collections page at 5000;
* a module's default view puts every dimension on rows and the line items on columns;
* a cancelled task (or one cancelled while applying) is rolled back entirely, processes included;
* certificate auth v2 accepts an 8-byte timestamp in seconds or milliseconds within
  ``config.cert_skew`` (300 s) and refuses a replayed signature.
"""

from ml_connector.sandbox.anaplan.app import EMULATOR_KEY, AnaplanEmulator
from ml_connector.sandbox.anaplan.builder import ModelBuilder
from ml_connector.sandbox.anaplan.default_model import DefaultModel, build_default_model
from ml_connector.sandbox.anaplan.state import AnaplanState, EmulatorConfig, PropertyDef

__all__ = [
    "EMULATOR_KEY",
    "AnaplanEmulator",
    "AnaplanState",
    "DefaultModel",
    "EmulatorConfig",
    "ModelBuilder",
    "PropertyDef",
    "build_default_model",
]
