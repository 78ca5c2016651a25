"""Handler cost without the network: the Calendly callback handler called in-process
(signature verify + store lookup + dedupe + delivery record + bookkeeping) per event,
with a target that accepts instantly. Prints p50/p99 in microseconds.

    .venv/bin/python benchmarks/handler_cost.py [--events 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import percentile  # noqa: E402
from shared import signatures  # noqa: E402
from shared.http import Request  # noqa: E402
from shared.targets import SendResult  # noqa: E402


class AcceptingTarget:
    def send(self, sub, delivery, budget_seconds):
        return SendResult(True, 200)


def measure(events: int) -> dict:
    from shared import api
    from shared.composition import compose
    from shared.models import HttpEndpoint, Subscription, SubscriptionState
    from shared.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"BRIDGE_SQLITE_PATH": os.path.join(tmp, "b.sqlite3"), "CALENDLY_PAT": "x",
                                      "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071"})
        bridge = compose(settings)
        bridge.deliveries.target_for = lambda sub: AcceptingTarget()
        sub = bridge.store.create_subscription(Subscription(
            id="a" * 32, target=HttpEndpoint("https://example.invalid/flow"), events=["invitee.created"],
            scope="organization", organization="https://api.calendly.com/organizations/O", user=None, group=None,
            signing_key="k" * 43, generation="g", state=SubscriptionState.ACTIVE, callback_token="t" * 43))
        samples = []
        for i in range(events):
            body = json.dumps({"event": "invitee.created", "created_at": "2026-11-24T10:00:00.000000Z",
                               "payload": {"uri": f"https://api.calendly.com/scheduled_events/E/invitees/{i}",
                                           "name": "Zoë Ångström", "email": "zoe@example.com"}}, ensure_ascii=False).encode()
            request = Request("POST", f"http://127.0.0.1/api/calendly/events/{sub.callback_token}",
                              {signatures.HEADER: signatures.sign(body, sub.signing_key)}, {}, {"id": sub.callback_token}, body)
            started = time.perf_counter()
            response = api.calendly_event(lambda: bridge, request)
            samples.append((time.perf_counter() - started) * 1e6)
            assert response.status == 200, response.body
        bridge.close()
    warm = samples[len(samples) // 10:]
    return {"events": events, "p50_us": round(statistics.median(warm), 1), "p99_us": round(percentile(warm, 99), 1),
            "mean_us": round(statistics.fmean(warm), 1)}


def filter_and_enrich_cost(runs: int = 20_000) -> dict:
    """What a filter check and the enrichment add per event (µs, median of ``runs``), on Calendly's
    invitee.created shape (devtools.sample_events: two questions, one host): the filter reads the
    parsed payload the handler already has; the enrichment parses the body and splices its member."""
    from devtools import sample_events
    from shared import enrichment
    from shared.filters import Filters

    envelope = sample_events.envelope("invitee.created", "https://api.calendly.com")
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    event_type = envelope["payload"]["scheduled_event"]["event_type"]
    filters = Filters(event_types=(event_type, "https://api.calendly.com/event_types/OTHER"), hosts=(sample_events.HOST_EMAIL,))

    def timed(fn) -> float:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1e6)
        return round(statistics.median(samples), 1)

    assert filters.matches(envelope)
    return {"body_bytes": len(body), "filter_us": timed(lambda: filters.matches(envelope)),
            "enrich_us": timed(lambda: enrichment.enrich(body))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args(argv)
    result = measure(args.events)
    print(f"handler in-process: p50 {result['p50_us']} us, p99 {result['p99_us']} us over {result['events']} events")
    extra = filter_and_enrich_cost()
    result.update(extra)
    print(f"filter check: {extra['filter_us']} us, enrichment: {extra['enrich_us']} us per event ({extra['body_bytes']}-byte invitee.created)")
    return result


if __name__ == "__main__":
    main()
