"""Structured log lines cannot be forged: whatever a maker, a target or a token puts into a value
(spaces, quotes, ``key=value`` text, U+0085, U+2028, line breaks), the line read back with the
documented ``parse-kv`` regex (docs/observability.md) has exactly the fields the code wrote."""
from __future__ import annotations

import logging
import re

import pytest

from shared.models import HttpEndpoint, ServiceBusEntity
from shared.redaction import logvalue
from tests.inprocess import Caller, compose_on, event

PAIRS = re.compile(r"(\w+)=('[^']*'|\S+)")  # the regex docs/observability.md gives parse-kv

HOSTILE = ["plain", "two words", "x status=500", "it's", "'quoted'", "a\u2028status=500", "a\x85status=500",
           "line\nstatus=500", "tab\tstatus=500", "back\\slash", "=", "", "caf\u00e9", "\u202etxt", "' status=500 '"]


def fields(line: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in PAIRS.findall(line):
        found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_stays_one_field(value):
    line = f"audit outcome=ok caller={logvalue(value)} status=200"
    assert "\n" not in line and "\u2028" not in line and "\x85" not in line
    parsed = fields(line)
    assert set(parsed) == {"outcome", "caller", "status"} and parsed["status"] == ["200"], line
    assert len(parsed["caller"]) == 1


@pytest.mark.parametrize("url", [
    "https://h.example/a b=1\u2028status=500'x/y?q=1", "https://h.example/it's status=500/x",
    "https://h.example/\u0085fingerprint=0000/x", "https://h.example/x?a b=1&status=500",
])
def test_a_stored_target_url_from_before_the_guard_is_logged_as_one_field(url):
    """Records made before the canonical reading refused such URLs still describe themselves safely."""
    line = f"forward delivery=d target={HttpEndpoint(url).describe()} status=200"
    parsed = fields(line)
    assert set(parsed) == {"delivery", "target", "fingerprint", "status"}, line
    assert parsed["status"] == ["200"] and len(parsed["fingerprint"]) == 1


def test_service_bus_targets_describe_themselves_as_one_field():
    line = f"forward delivery=d target={ServiceBusEntity('queue', 'a b status=500').describe()} status=sent"
    assert fields(line)["status"] == ["sent"]


def test_lines_from_a_real_run_read_back_with_their_fields_only(request, tmp_path, sandbox, target, caplog):
    """A subscription to a target whose path holds quotes and key=value text, a failing target
    (retry line with a quoted reason), a delivered event: every structured line parses back."""
    bridge = compose_on("sqlite", request, tmp_path, sandbox)
    caller = Caller(bridge, sandbox)
    with caplog.at_level(logging.INFO):
        sub, callback = caller.subscribed(target, path="/it's;status=500,fingerprint=0/x")
        target.respond(default=503)
        assert caller.post_event(callback, event(1)).status == 202
        target.respond(default=200)
        assert caller.post_event(callback, event(2)).status == 200
    bridge.close()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("shared")]
    structured = [line for line in lines if re.match(r"(subscription|delivery|forward|callback|audit) outcome=|forward ", line)]
    assert len(structured) >= 5, lines
    for line in structured:
        parsed = fields(line)
        assert all(len(values) == 1 for values in parsed.values()), line  # no key twice: nothing forged
        for key in ("status", "attempt"):
            if key in parsed:
                assert re.fullmatch(r"\d+|sent", parsed[key][0]), line
    created = [fields(line) for line in structured if line.startswith("subscription outcome=created")]
    assert created and created[0]["subscription"] == [sub["id"]]
