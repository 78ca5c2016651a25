"""Retention throughput on Table Storage (Azurite, in memory, loopback): how fast one purge run
deletes expired deliveries, and how many storage requests it sends (counted at the Azure SDK's
HTTP transport), batched (entity-group transactions of up to 100 per subscription, as shipped)
against one delete per record (as before). Also SQLite, for the local host.

    .venv/bin/python -m benchmarks.retention [--records 10000] [--subscriptions 10]

The design point is in the README's "Scale" section: purge capacity must be at least 10× the
sustained ingest rate, so that a backlog never builds up and personal data is never kept past
its retention. Azurite on loopback is faster per request than Azure (no network, no replication):
read the request counts as the portable figure, the rates as this machine's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta

from benchmarks.harness import azurite, bench_subscription, bulk_record
from benchmarks.isolation import TransportCount

EXPIRED = datetime(2026, 1, 1, tzinfo=UTC)
DESIGN_EVENTS_PER_SECOND = 10  # README "Scale": the sustained ingest the deployment is sized for


def _seed(store, records: int, subscriptions: int) -> None:
    """``records`` delivered deliveries, expired, spread evenly over ``subscriptions``."""
    from shared.models import Delivery, DeliveryStatus, isotime

    old = isotime(EXPIRED)
    for i in range(subscriptions):
        store.create_subscription(bench_subscription(i))
    bulk_record(store, [Delivery(id=f"{n % subscriptions:032x}-{n:024x}", subscription_id=f"{n % subscriptions:032x}",
                                 event="invitee.created", event_key=f"k{n}", body=b'{"event": "invitee.created", "payload": {}}',
                                 status=DeliveryStatus.DELIVERED, updated_at=old, next_attempt_at=old, created_at=old)
                        for n in range(records)])


def _purge(store, batched: bool) -> tuple[int, float]:
    from shared.models import DeliveryStatus
    from shared.retention import RetentionService

    if not batched:  # as before: one conditional delete per record
        inner = store

        def one_by_one(status, updated_before, limit):
            table = inner._table("deliveries")
            found = inner._call(lambda: inner._iter(table.query_entities(
                "status eq @s and updated_at lt @u", parameters={"s": status.value, "u": updated_before},
                select=["PartitionKey", "RowKey"], results_per_page=min(limit, 1000)), limit))
            return sum(inner._delete_if_present(table, e["PartitionKey"], e["RowKey"], e.metadata.get("etag")) for e in found)

        store = _Patched(store, purge_deliveries=one_by_one)
    retention = RetentionService(store, 72, 14, clock=lambda: EXPIRED + timedelta(days=30))
    started = time.perf_counter()
    purged = retention.purge()
    return purged[str(DeliveryStatus.DELIVERED)], time.perf_counter() - started


class _Patched:
    def __init__(self, inner, **overrides):
        self._inner, self._overrides = inner, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._inner, name)


def tables(connection: str, records: int, subscriptions: int) -> dict:
    import uuid

    from shared.composition import open_store
    from shared.settings import Settings

    out = {}
    for batched in (True, False):
        store = open_store(Settings.from_env({"AzureWebJobsStorage": connection,
                                              "BRIDGE_TABLE_PREFIX": f"b{uuid.uuid4().hex[:10]}"}))
        _seed(store, records, subscriptions)
        counter = TransportCount()
        with counter.counting():
            purged, seconds = _purge(store, batched)
        left = store.list_deliveries(f"{0:032x}", 10)[0]
        store.close()
        out["batched" if batched else "one_by_one"] = {
            "purged": purged, "seconds": round(seconds, 2), "per_second": round(purged / seconds),
            "requests": counter.by_service["table"], "requests_per_100": round(100 * counter.by_service["table"] / purged, 1),
            "left": len(left)}
    return out


def sqlite(records: int, subscriptions: int) -> dict:
    from shared.composition import open_store
    from shared.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": f"{folder}/r.sqlite3"}))
        _seed(store, records, subscriptions)
        purged, seconds = _purge(store, True)
        store.close()
    return {"purged": purged, "seconds": round(seconds, 2), "per_second": round(purged / seconds)}


def measure(records: int, subscriptions: int) -> dict:
    """SQLite, and Table Storage on an in-memory Azurite when it is installed."""
    results: dict = {"records": records, "subscriptions": subscriptions,
                     "design_events_per_second": DESIGN_EVENTS_PER_SECOND, "sqlite": sqlite(records, subscriptions)}
    with azurite() as connection:
        if connection:
            results["tables"] = tables(connection, records, subscriptions)
    return results


def rows(results: dict) -> list[tuple[str, str, str]]:
    """The README table's rows."""
    goal = f"≥ {10 * DESIGN_EVENTS_PER_SECOND}/s (10× the design ingest)"
    out = [(f"retention purge, {results['records']} expired over {results['subscriptions']} subscriptions (sqlite)",
            f"{results['sqlite']['per_second']}/s", goal)]
    if "tables" in results:
        batched, single = results["tables"]["batched"], results["tables"]["one_by_one"]
        out.append(("… on Table Storage (Azurite): batched / one by one (before)",
                    f"{batched['per_second']}/s, {batched['requests_per_100']} requests per 100 / "
                    f"{single['per_second']}/s, {single['requests_per_100']} per 100", goal))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=10)
    args = parser.parse_args()
    results = measure(args.records, args.subscriptions)
    print(json.dumps(results, indent=2))
    if "tables" in results:
        batched, single = results["tables"]["batched"], results["tables"]["one_by_one"]
        need = 10 * DESIGN_EVENTS_PER_SECOND
        print(f"Table Storage purge: {batched['per_second']}/s batched ({batched['requests_per_100']} requests per 100 records) "
              f"vs {single['per_second']}/s one by one ({single['requests_per_100']} per 100); goal ≥ {need}/s "
              f"(10× the design ingest of {DESIGN_EVENTS_PER_SECOND} events/s)")


if __name__ == "__main__":
    main()
