"""Soak: N signed events at concurrency C into the local host, the target failing a share of
requests with 503. Every event must be delivered exactly once by delivery id, none lost, and
Calendly must never get a 5xx.

    .venv/bin/python benchmarks/soak.py [--events 2000] [--concurrency 16] [--fail-ratio 0.2]
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from benchmarks.harness import FlakyTarget, Host, sign_headers, signed_events
from devtools.sandbox import Sandbox
from devtools.servers import BackgroundServer


def soak(events: int = 2000, concurrency: int = 16, fail_ratio: float = 0.2) -> dict:
    target_app = FlakyTarget(fail_ratio)
    with Sandbox(pat="soak-pat") as sandbox, BackgroundServer(target_app, threads=16) as target:
        host = Host(sandbox.url, "soak-pat").start()
        try:
            sub = requests.post(f"{host.url}/api/subscriptions", timeout=30,
                                json={"url": f"{target.url}/flow", "events": ["invitee.created"]}).json()
            key = host.signing_key(sub["id"])
            callback = host.callback_url(sub["id"])
            bodies = signed_events(events, key)
            statuses: Counter[int] = Counter()
            session_local = __import__("threading").local()

            def send(item):
                body, signing_key = item
                session = getattr(session_local, "s", None) or requests.Session()
                session_local.s = session
                response = session.post(callback, data=body,
                                        headers=sign_headers(body, signing_key), timeout=30)
                return response.status_code

            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                for status in pool.map(send, bodies):
                    statuses[status] += 1
            ingest_seconds = time.monotonic() - started
            rounds = 0
            while rounds < 20 and len(target_app.delivered) < events:
                host.redeliver()
                rounds += 1
            duplicates = sum(1 for n in target_app.delivered.values() if n > 1)
            return {
                "events": events, "concurrency": concurrency, "fail_ratio": fail_ratio,
                "calendly_statuses": dict(sorted(statuses.items())),
                "calendly_5xx": sum(n for s, n in statuses.items() if s >= 500),
                "target_requests": target_app.requests, "target_503s": target_app.failed,
                "delivered_unique": len(target_app.delivered), "delivered_twice_or_more": duplicates,
                "lost": events - len(target_app.delivered), "redeliver_rounds": rounds,
                "ingest_seconds": round(ingest_seconds, 2), "events_per_second": round(events / ingest_seconds, 1),
            }
        finally:
            host.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fail-ratio", type=float, default=0.2)
    args = parser.parse_args(argv)
    result = soak(args.events, args.concurrency, args.fail_ratio)
    print(f"soak: {result['events']} events at concurrency {result['concurrency']}, target failing {result['fail_ratio']:.0%}: "
          f"{result['delivered_unique']} delivered once, {result['delivered_twice_or_more']} twice, {result['lost']} lost, "
          f"{result['calendly_5xx']} 5xx to Calendly, answers {result['calendly_statuses']}, "
          f"{result['events_per_second']} events/s, {result['redeliver_rounds']} redeliver round(s)")
    return result


if __name__ == "__main__":
    main()
