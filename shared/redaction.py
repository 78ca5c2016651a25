"""Strip secrets from URLs before they reach a response or a log line."""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"sig", "code", "key", "token", "access_token", "api-key", "apikey", "signature", "secret", "password"})
REDACTED = "REDACTED"


def redact_url(url: str) -> str:
    """Return ``url`` with secret query values and any userinfo password replaced."""
    try:
        parts = urlsplit(url)
        query = [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":/,"), ""))
    except ValueError:
        return REDACTED


_SECRET_IN_TEXT = re.compile(r"(?i)\b(" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS)) + r")=([^&\s\"']+)")


class RedactingFilter(logging.Filter):
    """Scrubs ``sig=...``-style query secrets from log records (urllib3 logs request lines at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}={REDACTED}", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def install_log_redaction() -> None:
    """Attach the filter to the loggers that may print target URLs (idempotent)."""
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager", "urllib3.response",
                 "azure.core.pipeline.policies.http_logging_policy"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
