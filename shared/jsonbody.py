"""JSON bodies from the network, parsed without a way to a 5xx.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested input such as
``[[[[…]]]]``, and a deep enough document that does parse can still exhaust the stack later (in
validation or when serialised again). So every body the bridge reads goes through ``loads``: any
parse failure, and any document nested deeper than ``max_depth``, is the caller's 400.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import BridgeError

# Management bodies are flat (a subscribe body is 3 levels deep); Calendly's events nest about 6
# levels (payload → questions_and_answers → item, tracking, scheduled_event → location …).
MANAGEMENT_MAX_DEPTH = 16
EVENT_MAX_DEPTH = 32


def depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``[]`` and ``{}`` are 1), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(body: bytes | str, max_depth: int, code: str, what: str) -> Any:
    """``body`` parsed, or ``BridgeError(400, code)``: not UTF-8, not JSON, or nested deeper than
    ``max_depth`` (``what`` names the body in the message)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise BridgeError(400, code, f"{what} nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise BridgeError(400, code, f"{what} is not valid UTF-8 JSON") from None
    if depth(value) > max_depth:
        raise BridgeError(400, code, f"{what} nests deeper than {max_depth} levels")
    return value
