"""Whatever a target answers (status, headers, body, a cut or silent connection), the delivery path
records an outcome: it never raises, and a pending delivery's next attempt stays within the
backoff's bounds (a ``Retry-After`` of 3000000000, ``1e12``, ``inf`` or an HTTP date in year 9999
cannot park it for a century, overflow the date arithmetic or silence it)."""
from __future__ import annotations

import socket
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shared.delivery import DeliveryPolicy
from shared.models import DeliveryStatus, HttpEndpoint, Subscription, SubscriptionState
from tests.peers import FakeClock

POLICY = DeliveryPolicy()


class ScriptedTarget:
    """A raw HTTP/1.1 server on 127.0.0.1: reads a request, sends exactly the bytes scripted."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def scripted():
    server = ScriptedTarget()
    yield server
    server.close()


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    from shared.composition import compose
    from shared.settings import Settings

    clock = FakeClock(datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc))
    bridge = compose(Settings.from_env({
        "BRIDGE_SQLITE_PATH": str(tmp_path_factory.mktemp("answers") / "a.sqlite3"), "CALENDLY_PAT": "x",
        "CALENDLY_API_BASE": "http://127.0.0.1:9", "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071",
        "ALLOW_INSECURE_TARGETS": "true"}), clock=clock, policy=POLICY)
    yield bridge, clock
    bridge.close()


RETRY_AFTER = st.one_of(
    st.none(),
    st.sampled_from(["3000000000", "1e12", "inf", "-inf", "nan", "-1", "0", "120", " 7 ", "9" * 400,
                     "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 99999999 00:00:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT",
                     "tomorrow", ""]),
    st.integers(min_value=0, max_value=10**30).map(str),
    st.text(max_size=40),
)
STATUS = st.one_of(st.integers(min_value=100, max_value=599), st.sampled_from([0, 99, 600, 999, 1000, 20000]))
SHAPE = st.sampled_from(["whole", "no-length", "cut", "nothing", "garbage"])


def _answer(status: int, retry_after: str | None, extra: dict[str, str], body: bytes, shape: str) -> bytes:
    if shape == "nothing":
        return b""
    if shape == "garbage":
        return body or b"\x00\xff not http"
    head = f"HTTP/1.1 {status} Whatever\r\n"
    headers = dict(extra)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if shape == "whole":
        headers["Content-Length"] = str(len(body))
    elif shape == "cut":
        headers["Content-Length"] = str(len(body) + 100)
    headers["Connection"] = "close"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1", "replace") + b"\r\n" + body


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(status=STATUS, retry_after=RETRY_AFTER, body=st.binary(max_size=3000), shape=SHAPE,
       extra=st.dictionaries(st.sampled_from(["Location", "Content-Type", "X-Junk", "Transfer-Encoding", "Retry-After"]),
                             st.text(max_size=60), max_size=3))
def test_no_answer_raises_or_parks_a_delivery_out_of_bounds(scripted, deliveries, status, retry_after, body, shape, extra):
    bridge, clock = deliveries
    scripted.answer = _answer(status, retry_after, extra, body, shape)
    sub = Subscription(id="a" * 32, target=HttpEndpoint(f"http://127.0.0.1:{scripted.port}/hook"), events=["invitee.created"],
                       scope="organization", organization="o", user=None, group=None, signing_key="k", generation="g",
                       state=SubscriptionState.ACTIVE)
    service = bridge.deliveries
    delivery = service.new_delivery(sub, f"{'a' * 32}-{uuid.uuid4().hex[:24]}", "invitee.created", "key",
                                    b'{"event":"invitee.created"}')
    recorded = bridge.store.record_delivery(delivery) or delivery
    outcome = service.attempt(sub, recorded, budget_seconds=0.5)  # 0.5 s: one request, no in-call retry
    assert outcome.status in (DeliveryStatus.DELIVERED, DeliveryStatus.PENDING, DeliveryStatus.DISCARDED)
    if outcome.status == DeliveryStatus.PENDING:
        due = datetime.fromisoformat(outcome.next_attempt_at.replace("Z", "+00:00"))
        assert clock() < due <= clock() + timedelta(seconds=POLICY.backoff_max * 1.1 + 1)


@pytest.mark.parametrize("retry_after, low, high", [
    (3_000_000_000, 4 * 3600, 4 * 3600), (1e12, 4 * 3600, 4 * 3600), (float("inf"), 54, 66), (float("nan"), 54, 66),
    (-5, 54, 66), (5, 54, 66), (600, 600, 600), (None, 54, 66),
])
def test_retry_after_counts_only_within_the_backoff_bounds(retry_after, low, high):
    delay = POLICY.backoff_seconds(1, retry_after)
    assert low <= delay <= high


@pytest.mark.parametrize("raw, seconds", [
    ("120", 120.0), (" 7 ", 7.0), ("1e12", None), ("inf", None), ("nan", None), ("-1", None), ("tomorrow", None), ("", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Mon, 01 Jan 99999999 00:00:00 GMT", None),
])
def test_retry_after_header_is_read_as_urllib3_reads_it_or_ignored(raw, seconds):
    from shared.targets.http import retry_after_seconds

    assert retry_after_seconds(raw) == seconds
