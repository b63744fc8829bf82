"""HTTP plumbing shared by the Infor and Anaplan clients: retries, rate limiting, redaction.

Nothing here knows either API; both clients build on it.
"""

from ml_connector.net.ratelimit import RateLimiter
from ml_connector.net.redact import SecretRegistry, redact
from ml_connector.net.retry import RetryingTransport, RetryPolicy, parse_retry_after

__all__ = [
    "RateLimiter",
    "RetryPolicy",
    "RetryingTransport",
    "SecretRegistry",
    "parse_retry_after",
    "redact",
]
