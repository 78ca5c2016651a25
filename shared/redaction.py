"""Strip secrets from URLs before they reach a response or a log line."""
from __future__ import annotations

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
