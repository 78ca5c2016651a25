"""Run every benchmark and print one table (the README's Performance section shows it).

    .venv/bin/python -m benchmarks.run_all [--quick]
"""
from __future__ import annotations

import argparse
import os
import platform

from benchmarks import cold_start, handler_cost, ingest, isolation, reconcile, retention, soak, timer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (for a smoke check)")
    args = parser.parse_args(argv)
    n = 300 if args.quick else 2000
    handler = handler_cost.measure(500 if args.quick else 3000)
    handler.update(handler_cost.filter_and_enrich_cost(2000 if args.quick else 20_000))
    cold = cold_start.cold_start(3 if args.quick else 7)
    flow = ingest.ingest(n, 1000 if args.quick else 10000)
    soaked = soak.soak(n, 16, 0.2)
    reconciled = reconcile.reconcile_benchmark((100, 1000) if args.quick else reconcile.SIZES,
                                               ("sqlite",) if args.quick else ("sqlite", "tables"))
    isolated = (isolation.storage_requests(20 if args.quick else 100), isolation.isolation(50 if args.quick else 200),
                isolation.posts_per_event(3 if args.quick else 8))
    purge = retention.measure(1000 if args.quick else 10_000, 10)
    timed = timer.measure([1000, 5000] if args.quick else [10_000, 100_000], 10 if args.quick else 100,
                          rate=1 if args.quick else timer.DESIGN_EVENTS_PER_SECOND)
    c1, c16 = flow["c1"], flow["c16"]
    rows = [
        ("handler in-process p50 / p99", f"{handler['p50_us']:.0f} µs / {handler['p99_us']:.0f} µs", "p50 ≤ 1 ms"),
        ("filter check / enrichment per event", f"{handler['filter_us']} µs / {handler['enrich_us']} µs", "≪ the handler's p50"),
        ("floor c=1: p50 / p99 / rate", f"{c1['floor']['p50_ms']:.2f} / {c1['floor']['p99_ms']:.2f} ms / {c1['floor']['eps']:.0f} ev/s", ""),
        ("bridge c=1: p50 / p99 / rate", f"{c1['bridge']['p50_ms']:.2f} / {c1['bridge']['p99_ms']:.2f} ms / {c1['bridge']['eps']:.0f} ev/s", ""),
        ("c=1 ratio p50 / overhead", f"{c1['ratio_p50']:.2f} / {c1['overhead_ms_p50']:.2f} ms", ""),
        ("floor c=16: p50 / p99 / rate", f"{c16['floor']['p50_ms']:.2f} / {c16['floor']['p99_ms']:.2f} ms / {c16['floor']['eps']:.0f} ev/s", ""),
        ("bridge c=16: p50 / p99 / rate", f"{c16['bridge']['p50_ms']:.2f} / {c16['bridge']['p99_ms']:.2f} ms / {c16['bridge']['eps']:.0f} ev/s", "≥ 300 ev/s"),
        ("c=16 ratio p50 latency / throughput", f"{c16['ratio_p50']:.2f} / {c16['floor']['eps'] / c16['bridge']['eps']:.2f}", "≤ 1.5"),
        ("c=16 overhead p50", f"{c16['overhead_ms_p50']:.2f} ms", ""),
        ("bridge process CPU per event (c=1 / c=16)", f"{c1['bridge']['host_cpu_ms_per_event']:.2f} / {c16['bridge']['host_cpu_ms_per_event']:.2f} ms", ""),
        ("cold start, whole process: function_app / bare", f"{cold['function_app_ms']:.0f} / {cold['bare_ms']:.0f} ms "
         f"(×{cold['ratio']:.2f}, +{cold['function_app_ms'] - cold['bare_ms']:.0f} ms)", "≤ 1.5× bare (aim: bare + 50 ms)"),
        ("Calendly calls per subscribe", " ".join(map(str, flow["calendly_calls_per_subscribe"])), "1 once the org is known"),
        ("Calendly calls on the callback path", str(flow["calendly_calls_on_callback_path"]), "0"),
        (f"RSS over {flow['memory_events']} events (MB, per fifth)", " ".join(map(str, flow["rss_mb_per_batch"])), "flat"),
        (f"soak {soaked['events']} ev, c=16, 20% 503s", f"{soaked['delivered_unique']} once, {soaked['delivered_twice_or_more']} twice, "
         f"{soaked['lost']} lost, {soaked['calendly_5xx']} 5xx", "0 lost, 0 dup, 0 5xx"),
        *reconcile.rows(reconciled),
        *isolation.rows(*isolated),
        *retention.rows(purge),
        *timer.rows(timed),
    ]
    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, SQLite store (reconcile: also "
          f"Table Storage on Azurite), loopback\n")
    print("| measure | result | goal |\n| --- | --- | --- |")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")
    if reconciled["skipped"]:
        print(f"\nreconcile skipped {reconciled['skipped']}")
    print("\nimport-time top offenders (cumulative ms): " + ", ".join(f"{n} {ms:.0f}" for n, ms in cold["offenders"][:6]))


if __name__ == "__main__":
    main()
