"""Knobs of a run that are not in the SyncConnection spec: transports, retry and poll policies, sizes.

Production uses the defaults; tests pass tiny retry and poll policies and small chunks; benchmarks pass
bigger batches. Nothing here changes *what* a run does, only how fast and how patiently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from ml_connector.anaplan import PollPolicy
from ml_connector.infor import ClientOptions
from ml_connector.net.retry import RetryPolicy
from ml_connector.sync.csvfile import DEFAULT_CHUNK_SIZE


@dataclass(frozen=True)
class Tuning:
    #: Transports under both clients (tests and benchmarks may wrap them); None: real HTTP.
    infor_transport: httpx.AsyncBaseTransport | None = None
    anaplan_transport: httpx.AsyncBaseTransport | None = None
    #: Infor gateway client behaviour; the spec's rate limit replaces ``rate_limit``/``burst``.
    infor_client: ClientOptions | None = None
    #: Anaplan retries (429/5xx), client-side request rate and task polling.
    anaplan_retry: RetryPolicy | None = None
    anaplan_rate_limit: float = 10.0
    poll: PollPolicy | None = None
    #: Import files: uncompressed bytes per chunk (Anaplan: 1-50 MB), gzip level, chunks in flight.
    chunk_size: int = DEFAULT_CHUNK_SIZE
    compresslevel: int = 1
    upload_concurrency: int = 4
    #: Where spill files (row -> record maps beyond ``spill_threshold`` entries) go; the temp dir when None.
    spill_dir: Path | None = None
    spill_threshold: int = 50_000
    #: Records per batch of audit lookups (last loaded hashes) in deduplication.
    dedupe_batch: int = 2_000
    #: Infor rows per page / EXPORTMI batch (None: the spec's ``pageSize``).
    infor_page_size: int | None = None
    #: Rejections kept per flow in the run result (all of them are in the audit store).
    sample_rejections: int = 20
