"""How a target URL is shown: never its secrets, always the same way.

A Logic Apps / Power Automate callback URL is a bearer credential (its ``sig``), and other
targets carry theirs anywhere: ``api_key``/``client_secret``/``auth``/``access-token`` query
values, tokens in the path (Slack's ``/services/T…/B…/…``), userinfo. Rather than guess which
parts are secret, the bridge shows only what is never secret: the scheme, the host (and port),
the first path segment and the query's parameter names. Every query value and every path
segment past the first is ``REDACTED``. A fingerprint (the first 16 hex digits of the SHA-256 of
the full URL) tells two targets apart without showing either. Responses, errors and log lines
all use ``render_url``/``fingerprint``; ``install_log_redaction`` scrubs every log record.
"""
from __future__ import annotations

import hashlib
import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit

REDACTED = "REDACTED"
FINGERPRINT_DIGITS = 16


def fingerprint(material: str) -> str:
    """A stable short id of a target: the same URL always gives the same fingerprint."""
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:FINGERPRINT_DIGITS]


def redact_path(path_and_query: str) -> str:
    """``/first/REDACTED/REDACTED?name=REDACTED&…``: the path and query of a URL, shown safely."""
    path, _, query = path_and_query.partition("?")
    path = path.split("#", 1)[0]
    segments = path.split("/")
    # segments[0] is "" (the path starts with /); keep the first real segment only.
    shown = segments[:2] + [REDACTED if s else s for s in segments[2:]]
    rendered = "/".join(shown)
    if query:
        names = [name for name, _ in parse_qsl(query.split("#", 1)[0], keep_blank_values=True)]
        rendered += "?" + "&".join(f"{quote(name, safe='-._~')}={REDACTED}" for name in names)
    return rendered


def render_url(url: str) -> str:
    """The URL as responses and logs show it: scheme://host[:port] plus ``redact_path``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{port}" if port else host
    tail = redact_path(parts.path + (f"?{parts.query}" if parts.query else ""))
    return f"{parts.scheme}://{netloc}{tail}"


# Secrets that may be quoted in free text (a library's message): key=value pairs with a secret-ish
# key, and connection-string keys.
_SECRET_KEY = r"(?:sig|code|key|token|access[_-]?token|api[_-]?key|apikey|signature|secret|client[_-]?secret|password|auth|" \
              r"SharedAccessKey|SharedAccessSignature|AccountKey)"
_SECRET_IN_TEXT = re.compile(r"(?i)\b(" + _SECRET_KEY + r")=([^&;\s\"']+)")
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)


# Bare request paths in text: after an HTTP method (request lines) or ``url:`` (urllib3's errors).
_REQUEST_PATH_IN_TEXT = re.compile(r"(\b(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) |\burl: )(/[^\s\"'<>]*)")


def scrub_text(text: str) -> str:
    """Free text with every URL and request path rendered safely and secret-looking
    ``key=value`` values redacted."""
    text = _URL_IN_TEXT.sub(lambda m: render_url(m.group(0)), text)
    text = _REQUEST_PATH_IN_TEXT.sub(lambda m: m.group(1) + redact_path(m.group(2)), text)
    return scrub_secrets(text)


def scrub_secrets(text: str) -> str:
    """Only the values of secret-looking ``key=value`` pairs redacted."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def scrub_library_arg(arg: str) -> str:
    """An argument of a library's log line: a bare path (urllib3 passes the request path and its
    query as an argument of its own) by ``redact_path``, anything else by ``scrub_text``."""
    return redact_path(arg) if arg.startswith("/") else scrub_text(arg)


def _scrub_args(args: tuple, scrub) -> tuple:
    return tuple(scrub(a) if isinstance(a, str) else scrub(str(a)) if isinstance(a, BaseException) else a for a in args)


def scrub_record(record: logging.LogRecord, own: bool = False) -> logging.LogRecord:
    """The record with its arguments, its message (when it has no arguments: a template's own
    ``secret=%s`` is left alone) and its traceback rendered safely. The bridge's own lines
    (``own``) render targets themselves with ``describe()`` and name Calendly's resource URIs on
    purpose (not secrets): only secret-looking ``key=value`` values are redacted there."""
    scrub = scrub_secrets if own else scrub_library_arg
    if isinstance(record.args, tuple) and record.args:
        record.args = _scrub_args(record.args, scrub)
    elif isinstance(record.msg, (str, BaseException)) and not record.args:
        record.msg = (scrub_secrets if own else scrub_text)(str(record.msg))
    if record.exc_info and record.exc_info[1] is not None:
        # Formatters print record.exc_text when set: pre-format the traceback, scrubbed.
        record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
    return record


OWN_LOGGERS = ("shared", "devtools")


def install_log_redaction() -> None:
    """Scrub every log record (urllib3 logs the request path and query at DEBUG, its retry
    messages quote them, Azure SDKs quote endpoints, exception messages quote URLs), whichever
    logger or handler it reaches: a record factory sees them all, child loggers included. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "bridge_redacting", False):
        return

    def factory(name, *args, **kwargs):
        record = current(name, *args, **kwargs)
        return scrub_record(record, own=name.split(".", 1)[0] in OWN_LOGGERS)

    factory.bridge_redacting = True  # type: ignore[attr-defined]  # a marker on the function: installed once
    logging.setLogRecordFactory(factory)


_PLAIN_VALUE = re.compile(r"[\x21-\x26\x28-\x7e]+")  # printable ASCII, no space and no single quote


def logvalue(value: object) -> str:
    """``value`` as one field of a ``key=value`` log line, so it can never become two: as it is when
    it is plain printable ASCII without spaces or quotes, else single-quoted with ``\\``, ``'`` and
    every character outside printable ASCII escaped (``\\u2028``, ``\\x85``, ``\\n`` …). The quoted
    form contains no ``'`` and no line break, so the documented ``(\\w+)=('[^']*'|\\S+)`` reads it whole."""
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").encode("ascii", "backslashreplace").decode("ascii")  # non-ASCII -> \xNN / \uNNNN
    escaped = escaped.replace("'", "\\x27")
    escaped = "".join(ch if 0x20 <= ord(ch) < 0x7f else f"\\x{ord(ch):02x}" for ch in escaped)
    return f"'{escaped}'"
