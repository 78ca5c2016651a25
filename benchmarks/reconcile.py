"""Reconcile at scale: the Calendly calls one ``python -m shared reconcile`` makes over N
organization-scope subscriptions (N = 100, 1,000, 10,000), all healthy and with 1% of the
hooks disabled, on the SQLite store and on Table Storage (Azurite), against the sandbox.
Calls are counted with the sandbox's request log; the goal is at most ceil(N/100) list calls
plus a constant for healthy subscriptions, and repairs within the run's share of the rate limit
(what is left over is finished by the next run, also counted).

The sandbox's rate-limit window is shortened to a few seconds so the runs' waits for it (a
10,000-subscription run spends more than 20% of one 500-call minute) don't dominate the
benchmark; calls, not seconds, are what it measures.

    .venv/bin/python -m benchmarks.reconcile [--sizes 100,1000,10000] [--stores sqlite,tables]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from benchmarks.harness import ROOT, azurite
from devtools.sandbox import Sandbox
from shared.models import HttpEndpoint, Subscription, SubscriptionState, new_callback_token
from shared.settings import Settings
from shared.composition import open_store
from shared.lifecycle import new_signing_key

PAT = "bench-pat"
PUBLIC_URL = "http://127.0.0.1:9"  # reconcile never needs the bridge to answer
WINDOW_SECONDS = 3.0
SIZES = (100, 1000, 10000)


def _env(store_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALENDLY_", "BRIDGE_", "AzureWebJobs", "RECONCILE_"))}
    return env | {"CALENDLY_PAT": PAT, "BRIDGE_PUBLIC_URL": PUBLIC_URL, "BRIDGE_LOG_LEVEL": "WARNING"} | store_env


def _seed(sandbox: Sandbox, store_env: dict, n: int, disabled_every: int | None) -> int:
    """N active records with their hooks (every ``disabled_every``-th hook disabled); returns how many are disabled."""
    app = sandbox.app
    store = open_store(Settings.from_env(_env(store_env)))
    disabled = 0

    def one(i: int) -> bool:
        sub_id = f"{i:032x}"
        off = bool(disabled_every) and i % disabled_every == disabled_every // 2
        token = new_callback_token()
        hook = app.add_hook(f"{PUBLIC_URL}/api/calendly/events/{token}", ["invitee.created", "invitee.canceled"],
                            signing_key="k", state="disabled" if off else "active")
        store.create_subscription(Subscription(
            id=sub_id, target=HttpEndpoint(f"https://prod-00.westeurope.logic.azure.com/workflows/{i}/triggers/manual"),
            events=["invitee.canceled", "invitee.created"], scope="organization", organization=app.organization_uri,
            user=None, group=None, signing_key=new_signing_key(), generation="g", state=SubscriptionState.ACTIVE,
            calendly_webhook=hook["uri"], callback_token=token))
        return off

    try:
        with ThreadPoolExecutor(8 if store.name == "tables" else 1) as pool:
            disabled = sum(pool.map(one, range(n)))
    finally:
        store.close()
    return disabled


def _run(sandbox: Sandbox, store_env: dict) -> dict:
    """One ``python -m shared reconcile``: its summary, the Calendly calls it made, its seconds."""
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.set_rate_limit(window=WINDOW_SECONDS)
    env = _env(store_env) | {"CALENDLY_API_BASE": sandbox.url}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "shared", "reconcile"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    seconds = time.monotonic() - started
    if not done.stdout.strip():
        raise RuntimeError(f"reconcile failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    requests_made = sandbox.app.requests_log()
    return {"summary": summary, "calls": len(requests_made), "seconds": round(seconds, 2),
            "by_kind": {k: sum(1 for r in requests_made if _kind(r) == k) for k in {_kind(r) for r in requests_made}}}


def _kind(request: dict) -> str:
    if request["path"] == "/webhook_subscriptions":
        return "list" if request["method"] == "GET" else "create"
    if request["path"].startswith("/webhook_subscriptions/"):
        return "get one" if request["method"] == "GET" else "delete"
    return request["path"]


def case(store: str, store_env: dict, n: int, disabled_share: float) -> dict:
    with Sandbox(pat=PAT) as sandbox:
        disabled = _seed(sandbox, store_env, n, round(1 / disabled_share) if disabled_share else None)
        runs = [_run(sandbox, store_env)]
        while runs[-1]["summary"]["leftover"] and len(runs) < 10:
            runs.append(_run(sandbox, store_env))
        final = _run(sandbox, store_env) if disabled else None  # everything healthy again: list pages only
    first = runs[0]["summary"]
    return {"store": store, "n": n, "disabled": disabled, "runs": [r["calls"] for r in runs],
            "seconds": [r["seconds"] for r in runs], "kinds": [r["by_kind"] for r in runs],
            "recreated": sum(r["summary"]["recreated"] for r in runs), "leftover": [r["summary"]["leftover"] for r in runs],
            "list_pages": first["list_pages"], "errors": sum(len(r["summary"]["errors"]) for r in runs),
            "after": final["calls"] if final else None, "goal": math.ceil(n / 100) + 5}


def _store_envs(stores: tuple[str, ...], workdir: str, conn: str | None) -> dict:
    envs = {}
    if "sqlite" in stores:
        envs["sqlite"] = lambda n, h: {"BRIDGE_SQLITE_PATH": os.path.join(workdir, f"r{n}-{h}.sqlite3")}
    if "tables" in stores and conn:
        envs["tables"] = lambda n, h: {"AzureWebJobsStorage": conn, "BRIDGE_TABLE_PREFIX": f"b{uuid.uuid4().hex[:12]}"}
    return envs


def reconcile_benchmark(sizes=SIZES, stores=("sqlite", "tables")) -> dict:
    results = []
    skipped = None
    with tempfile.TemporaryDirectory(prefix="bridge-reconcile-") as workdir, azurite("tables" in stores, workdir) as conn:
        if "tables" in stores and conn is None:
            skipped = "tables: Azurite is not installed (npm ci)"
        for store, make_env in _store_envs(stores, workdir, conn).items():
            for n in sizes:
                for share in (0.0, 0.01):
                    results.append(case(store, make_env(n, share), n, share))
    return {"cases": results, "skipped": skipped, "window_seconds": WINDOW_SECONDS}


def rows(result: dict) -> list[tuple[str, str, str]]:
    """The README's rows: per store, healthy and 1% disabled, N = each size."""
    out = []
    by = {(c["store"], c["n"], bool(c["disabled"])): c for c in result["cases"]}
    stores = sorted({c["store"] for c in result["cases"]}, key=lambda s: s != "sqlite")
    sizes = sorted({c["n"] for c in result["cases"]})
    label = " / ".join(f"{n:,}" for n in sizes)
    goal = " / ".join(str(math.ceil(n / 100) + 5) for n in sizes)
    for store in stores:
        healthy = [by[(store, n, False)] for n in sizes]
        out.append((f"reconcile Calendly calls, N = {label} healthy ({store})",
                    " / ".join(str(c["runs"][0]) for c in healthy), f"≤ ⌈N/100⌉ + 5: {goal}"))
        sick = [by[(store, n, True)] for n in sizes]
        out.append((f"… with 1% disabled: calls per run until done ({store})",
                    " / ".join("+".join(map(str, c["runs"])) for c in sick),
                    "lists + 2 per disabled hook, ≤ 100 repair calls a run"))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--stores", default="sqlite,tables")
    args = parser.parse_args(argv)
    result = reconcile_benchmark(tuple(int(n) for n in args.sizes.split(",")), tuple(args.stores.split(",")))
    for c in result["cases"]:
        print(f"{c['store']:6} N={c['n']:>6} disabled={c['disabled']:>4}: calls per run {c['runs']} "
              f"(list pages {c['list_pages']}, leftover {c['leftover']}, recreated {c['recreated']}, errors {c['errors']}; "
              f"then healthy: {c['after']}) in {c['seconds']} s; goal for healthy ≤ {c['goal']}; {c['kinds']}")
    if result["skipped"]:
        print(f"skipped {result['skipped']}")
    print()
    for name, value, goal in rows(result):
        print(f"| {name} | {value} | {goal} |")
    return result


if __name__ == "__main__":
    main()
