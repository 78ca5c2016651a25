"""Delivery isolation and the Azure-path cost (issue: a slow target never holds up others, one
POST per attempt, at most 2 storage requests per forwarded callback).

    .venv/bin/python -m benchmarks.isolation [--quick]

1. Storage requests per callback on Table Storage (Azurite), counted at the HTTP transport the
   Azure SDKs send through (every request that leaves the process), for delivered, pending and
   duplicate callbacks, once the subscription is cached (and for the first callback).
2. Other subscriptions' callbacks (p50/p99) while 40 callbacks hit a target that answers after
   5 s, against the same without the slow target: the local host (waitress, 16 threads), SQLite.
3. POSTs a target slower than the 4 s read timeout receives per event: over one attempt, and over
   the whole retry schedule (DELIVERY_MAX_ATTEMPTS attempts, an injected clock between them).
Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import requests

from benchmarks.harness import FlakyTarget, Host, azurite, percentile, sign_headers, signed_events
from shared.isolation import IN_REQUEST_PER_TARGET as IN_REQUEST

SLOW_SECONDS = 5.0


class SlowTarget:
    """Answers 200 after ``delay`` seconds; counts POSTs per delivery id."""

    def __init__(self, delay: float):
        self.delay = delay
        self.posts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self._lock:
            self.posts[environ.get("HTTP_X_BRIDGE_DELIVERY_ID", "")] += 1
        time.sleep(self.delay)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]


@contextlib.contextmanager
def serving(app, threads: int = 16):
    from devtools.servers import BackgroundServer

    server = BackgroundServer(app, threads=threads).start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def sandbox():
    from devtools.sandbox import Sandbox

    running = Sandbox(pat="bench-pat").start()
    try:
        yield running
    finally:
        running.stop()


def _subscribe(host_url: str, target_url: str) -> dict:
    response = requests.post(f"{host_url}/api/subscriptions", json={"url": target_url, "events": ["invitee.created"]},
                             timeout=30)
    response.raise_for_status()
    return response.json()


# 1. Storage requests per callback ------------------------------------------------------------------
class TransportCount:
    """Counts the HTTP requests the Azure SDKs send (azure-core's requests transport), by service."""

    def __init__(self):
        self.by_service: Counter[str] = Counter()

    @contextlib.contextmanager
    def counting(self):
        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send

        def send(transport, request, **kwargs):
            service = "queue" if "/messages" in request.url else "table"
            self.by_service[service] += 1
            return original(transport, request, **kwargs)

        RequestsTransport.send = send
        try:
            yield self
        finally:
            RequestsTransport.send = original


def storage_requests(events: int) -> dict:
    from shared import api, signatures
    from shared.composition import compose
    from shared.http import Request
    from shared.settings import Settings

    with azurite() as connection, sandbox() as calendly, serving(FlakyTarget(0.0)) as ok_url, \
            serving(FlakyTarget(1.0)) as failing_url:
        if connection is None:
            return {"skipped": "Azurite is not installed (npm ci)"}
        bridge = compose(Settings.from_env({
            "AzureWebJobsStorage": connection, "CALENDLY_API_BASE": calendly.url, "CALENDLY_PAT": "bench-pat",
            "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071", "ALLOW_INSECURE_TARGETS": "true", "BRIDGE_LOG_LEVEL": "WARNING"}))
        provider = lambda: bridge  # noqa: E731

        def subscribe(url: str) -> tuple[str, str]:
            body = json.dumps({"url": url, "events": ["invitee.created"]}).encode()
            sub = json.loads(api.subscribe(provider, Request("POST", "http://127.0.0.1/api/subscriptions", {}, {}, {}, body)).body)
            record = bridge.store.get_subscription(sub["id"])
            return record.callback_token, record.signing_key

        def post(token: str, body: bytes, key: str) -> int:
            request = Request("POST", f"http://127.0.0.1/api/calendly/events/{token}",
                              {signatures.HEADER: signatures.sign(body, key)}, {}, {"id": token}, body)
            return api.calendly_event(provider, request).status

        results = {}
        try:
            for name, url in (("delivered", f"{ok_url}/ok"), ("pending", f"{failing_url}/down")):
                token, key = subscribe(url)
                bodies = [b for b, _ in signed_events(events + 1, key)]
                counter = TransportCount()
                with counter.counting():
                    post(token, bodies[0], key)
                    first = dict(counter.by_service)
                    counter.by_service.clear()
                    for body in bodies[1:]:
                        post(token, body, key)
                    warm = dict(counter.by_service)
                    counter.by_service.clear()
                    if name == "delivered":
                        for body in bodies[1:]:
                            post(token, body, key)  # the same events again: duplicates
                        results["duplicate"] = {s: n / events for s, n in counter.by_service.items()}
                results[name] = {s: n / events for s, n in warm.items()}
                results[f"{name}_first"] = first
        finally:
            bridge.close()
        return results


# 2. Other subscriptions while a slow target is hit ---------------------------------------------------
def isolation(fast_events: int) -> dict:
    with sandbox() as calendly, serving(SlowTarget(SLOW_SECONDS), threads=64) as slow_url, \
            serving(FlakyTarget(0.0)) as fast_url:
        host = Host(calendly.url, "bench-pat", workdir=tempfile.mkdtemp(prefix="bench-isolation-")).start()
        try:
            slow, fast = _subscribe(host.url, f"{slow_url}/slow"), _subscribe(host.url, f"{fast_url}/fast")
            slow_cb, fast_cb = host.callback_url(slow["id"]), host.callback_url(fast["id"])
            slow_key, fast_key = host.signing_key(slow["id"]), host.signing_key(fast["id"])
            session = requests.Session()

            def fast_latencies() -> list[float]:
                out = []
                for body, key in signed_events(fast_events, fast_key):
                    started = time.perf_counter()
                    response = session.post(fast_cb, data=body, headers=sign_headers(body, key), timeout=30)
                    out.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                return out

            baseline = fast_latencies()
            slow_answers: list[tuple[int, float]] = []

            def hit_slow(body: bytes, key: str) -> None:
                started = time.perf_counter()
                response = requests.post(slow_cb, data=body, headers=sign_headers(body, key), timeout=30)
                slow_answers.append((response.status_code, time.perf_counter() - started))

            threads = [threading.Thread(target=hit_slow, args=item) for item in signed_events(40, slow_key)]
            for thread in threads:
                thread.start()
            time.sleep(0.2)  # the 40 are in flight
            started = time.perf_counter()
            health = requests.get(f"{host.url}/api/health", timeout=30)
            health_s = time.perf_counter() - started
            loaded = fast_latencies()
            for thread in threads:
                thread.join(60)
        finally:
            host.stop()
    statuses = Counter(status for status, _ in slow_answers)
    return {
        "baseline_p50_ms": percentile(baseline, 50) * 1000, "baseline_p99_ms": percentile(baseline, 99) * 1000,
        "loaded_p50_ms": percentile(loaded, 50) * 1000, "loaded_p99_ms": percentile(loaded, 99) * 1000,
        "health_ms": health_s * 1000, "health_status": health.status_code,
        "slow_answers": dict(statuses), "slow_answer_max_s": max(s for _, s in slow_answers),
    }


# 3. POSTs per event for a target slower than the read timeout --------------------------------------
def posts_per_event(attempts: int) -> dict:
    from shared.delivery import DeliveryPolicy
    from shared.composition import compose
    from shared.models import Delivery, HttpEndpoint, Subscription, SubscriptionState
    from shared.settings import Settings
    from shared.targets import http as http_target

    slow = SlowTarget(http_target.ATTEMPT_TIMEOUT.read_timeout + 1.0)
    with serving(slow, threads=16) as url:
        clock_now = [datetime(2026, 3, 1, tzinfo=timezone.utc)]
        workdir = tempfile.mkdtemp(prefix="bench-posts-")
        bridge = compose(Settings.from_env({"BRIDGE_SQLITE_PATH": f"{workdir}/b.sqlite3", "CALENDLY_PAT": "x",
                                            "CALENDLY_API_BASE": "http://127.0.0.1:9", "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071",
                                            "ALLOW_INSECURE_TARGETS": "true", "DELIVERY_MAX_ATTEMPTS": str(attempts)}),
                         clock=lambda: clock_now[0], policy=DeliveryPolicy(max_attempts=attempts))
        try:
            sub = Subscription(id="b" * 32, target=HttpEndpoint(f"{url}/slow"), events=["invitee.created"], scope="organization",
                               organization="o", user=None, group=None, signing_key="k", generation="g",
                               state=SubscriptionState.ACTIVE)
            bridge.store.create_subscription(sub)
            delivery = bridge.deliveries.new_delivery(sub, f"{'b' * 32}-{'1' * 24}", "invitee.created", "k", b"{}")
            recorded = bridge.store.record_delivery(delivery)
            bridge.deliveries.attempt(sub, recorded, bridge.deliveries.policy.in_request_budget)
            one_attempt = slow.posts[delivery.id]
            while True:
                current = bridge.store.get_delivery(delivery.id)
                if current.status != "pending":
                    break
                clock_now[0] = datetime.fromisoformat(current.next_attempt_at.replace("Z", "+00:00"))
                bridge.deliveries.retry_due()
        finally:
            bridge.close()
    return {"one_attempt": one_attempt, "schedule": slow.posts[delivery.id], "attempts": attempts,
            "final_status": str(current.status)}


def rows(storage: dict, iso: dict, posts: dict) -> list[tuple[str, str, str]]:
    out = []
    if "skipped" in storage:
        out.append(("storage requests per callback (Table Storage)", storage["skipped"], "≤ 2"))
    else:
        for name in ("delivered", "pending", "duplicate"):
            counts = storage[name]
            out.append((f"storage requests per {name} callback (table + queue)",
                        f"{counts.get('table', 0):.2f} + {counts.get('queue', 0):.2f}",
                        "≤ 2" if name == "delivered" else ("≤ 2 + 1 queue" if name == "pending" else "1")))
        first = storage["delivered_first"]
        out.append(("… the first callback of a subscription (uncached)", f"{first.get('table', 0)} + {first.get('queue', 0)}", ""))
    out.append(("other subs' callbacks p50 / p99 (baseline)", f"{iso['baseline_p50_ms']:.1f} / {iso['baseline_p99_ms']:.1f} ms", ""))
    out.append(("… while 40 callbacks hit a 5 s target", f"{iso['loaded_p50_ms']:.1f} / {iso['loaded_p99_ms']:.1f} ms "
                f"(health {iso['health_ms']:.0f} ms)", "within 500 ms of baseline"))
    out.append(("… the 40 slow callbacks answered", " ".join(f"{n}×{s}" for s, n in sorted(iso["slow_answers"].items()))
                + f", slowest {iso['slow_answer_max_s']:.1f} s", f"≤ {IN_REQUEST} in-request"))
    out.append(("POSTs per event, target slower than the read timeout", f"{posts['one_attempt']} per attempt, "
                f"{posts['schedule']} over {posts['attempts']} attempts ({posts['final_status']})", "1 per attempt"))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    storage = storage_requests(20 if args.quick else 100)
    iso = isolation(50 if args.quick else 200)
    posts = posts_per_event(3 if args.quick else 8)
    print(json.dumps({"storage": storage, "isolation": iso, "posts": posts}, indent=1))
    print("| measure | result | goal |\n| --- | --- | --- |")
    for name, value, goal in rows(storage, iso, posts):
        print(f"| {name} | {value} | {goal} |")


if __name__ == "__main__":
    main()
