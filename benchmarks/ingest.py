"""Ingest: signed Calendly events into the local host, forwarded to a local target over
loopback, at concurrency 1 and 16 — side by side with the same POSTs sent straight to the
target (the floor). Prints p50/p99 latency, events/s, the ratio bridge/floor and the
bridge's own overhead in ms. Also: Calendly API calls per subscribe and on the callback
path, and the host's memory across many events.

    .venv/bin/python -m benchmarks.ingest [--events 2000] [--memory-events 10000]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from benchmarks.harness import FlakyTarget, Host, percentile, sign_headers, signed_events
from devtools.sandbox import Sandbox
from devtools.servers import BackgroundServer


def _drive(url_for, bodies, headers_for, concurrency: int) -> dict:
    local = threading.local()
    latencies: list[float] = []
    lock = threading.Lock()

    def send(body):
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        headers = headers_for(body)
        started = time.perf_counter()
        response = session.post(url_for(body), data=body, headers=headers, timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code < 300, response.text
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, bodies))
    wall = time.perf_counter() - started
    return {"p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99), "eps": len(bodies) / wall}


def ingest(events: int = 2000, memory_events: int = 10000) -> dict:
    target_app = FlakyTarget(0.0)
    results: dict = {"events": events}
    with Sandbox(pat="bench-pat") as sandbox, BackgroundServer(target_app, threads=32) as target:
        host = Host(sandbox.url, "bench-pat", threads=16).start()
        try:
            calls_before = len(sandbox.app.requests_log())
            subs = []
            per_subscribe = []
            for i in range(5):
                before = len(sandbox.app.requests_log())
                subs.append(requests.post(f"{host.url}/api/subscriptions", timeout=30,
                                          json={"url": f"{target.url}/flow{i}", "events": ["invitee.created"]}).json())
                per_subscribe.append(len(sandbox.app.requests_log()) - before)
            results["calendly_calls_per_subscribe"] = per_subscribe
            sub = subs[0]
            key = host.signing_key(sub["id"])
            callback = host.callback_url(sub["id"])
            log_before_events = len(sandbox.app.requests_log())
            for concurrency in (1, 16):
                floor_bodies = [b for b, _ in signed_events(events, key)]
                bridge_bodies = [b for b, _ in signed_events(events, key)]
                # warm both paths
                _drive(lambda b: f"{target.url}/flow0", floor_bodies[:50], lambda b: {"Content-Type": "application/json"}, concurrency)
                _drive(lambda b: callback, [b for b, _ in signed_events(50, key)], lambda b: sign_headers(b, key), concurrency)
                floor = _drive(lambda b: f"{target.url}/flow0", floor_bodies, lambda b: {"Content-Type": "application/json"}, concurrency)
                cpu_before = host.cpu_seconds()
                bridge = _drive(lambda b: callback, bridge_bodies, lambda b: sign_headers(b, key), concurrency)
                bridge["host_cpu_ms_per_event"] = (host.cpu_seconds() - cpu_before) * 1000 / len(bridge_bodies)
                results[f"c{concurrency}"] = {"floor": floor, "bridge": bridge,
                                              "ratio_p50": bridge["p50_ms"] / floor["p50_ms"],
                                              "overhead_ms_p50": bridge["p50_ms"] - floor["p50_ms"]}
            results["calendly_calls_on_callback_path"] = len(sandbox.app.requests_log()) - log_before_events
            # Memory: resident set after successive batches must not grow with the count.
            rss = []
            batch = max(1, memory_events // 5)
            for _ in range(5):
                _drive(lambda b: callback, [b for b, _ in signed_events(batch, key)], lambda b: sign_headers(b, key), 16)
                with open(f"/proc/{host.proc.pid}/status") as fh:
                    rss.append(next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) // 1024)
            results["memory_events"] = batch * 5
            results["rss_mb_per_batch"] = rss
            results["peak_rss_mb"] = host.rss_kb() // 1024
            results["_calls_total"] = len(sandbox.app.requests_log()) - calls_before
        finally:
            host.stop()
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--memory-events", type=int, default=10000)
    args = parser.parse_args(argv)
    r = ingest(args.events, args.memory_events)
    for c in (1, 16):
        x = r[f"c{c}"]
        print(f"concurrency {c:>2}: floor p50 {x['floor']['p50_ms']:.2f} ms p99 {x['floor']['p99_ms']:.2f} ms {x['floor']['eps']:.0f}/s | "
              f"bridge p50 {x['bridge']['p50_ms']:.2f} ms p99 {x['bridge']['p99_ms']:.2f} ms {x['bridge']['eps']:.0f}/s | "
              f"ratio {x['ratio_p50']:.2f}, overhead {x['overhead_ms_p50']:.2f} ms, bridge CPU {x['bridge']['host_cpu_ms_per_event']:.2f} ms/event")
    print(f"Calendly calls per subscribe: {r['calendly_calls_per_subscribe']}; on the callback path: {r['calendly_calls_on_callback_path']}")
    print(f"RSS after each fifth of {r['memory_events']} events (MB): {r['rss_mb_per_batch']}; peak {r['peak_rss_mb']} MB")
    return r


if __name__ == "__main__":
    main()
