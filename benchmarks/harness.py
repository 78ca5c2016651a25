"""Pieces the benchmarks share: a flaky counting target, the local host in a subprocess,
signed event generation, and percentiles. Everything listens on 127.0.0.1 only."""
from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import sample_events
from shared import signatures  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


class FlakyTarget:
    """Answers 503 to ``fail_ratio`` of requests (seeded), 200 otherwise; counts 2xx per delivery id."""

    def __init__(self, fail_ratio: float = 0.0, seed: int = 7):
        self.fail_ratio = fail_ratio
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.failed = 0
        self.delivered: Counter[str] = Counter()

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        delivery = environ.get("HTTP_X_BRIDGE_DELIVERY_ID", "")
        with self._lock:
            self.requests += 1
            fail = self._random.random() < self.fail_ratio
            if fail:
                self.failed += 1
            else:
                self.delivered[delivery] += 1
        start_response("503 Service Unavailable" if fail else "200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]


class Host:
    """``python -m shared serve`` with its own SQLite file, against the given Calendly base."""

    def __init__(self, calendly_url: str, pat: str, workdir: str | None = None, threads: int = 16, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir or tempfile.mkdtemp(prefix="bridge-bench-")
        self.sqlite = os.path.join(self.dir, "bridge.sqlite3")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALENDLY_", "BRIDGE_", "AzureWebJobs"))}
        env.update({"CALENDLY_API_BASE": calendly_url, "CALENDLY_PAT": pat, "BRIDGE_SQLITE_PATH": self.sqlite,
                    "BRIDGE_PUBLIC_URL": self.url, "ALLOW_INSECURE_TARGETS": "true", "BRIDGE_LOG_LEVEL": "WARNING"})
        env.update(extra_env or {})
        self.env = env
        self.threads = threads
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Host":
        self.log = open(os.path.join(self.dir, "host.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", str(self.port), "--threads",
                                      str(self.threads), "--redeliver-interval", "0", "--reconcile-interval", "0"],
                                     cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/health", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("the local host did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the host process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signing_key(self, sub_id: str) -> str:
        with sqlite3.connect(self.sqlite) as db:
            return json.loads(db.execute("SELECT data FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()[0])["signing_key"]

    def callback_url(self, sub_id: str) -> str:
        """The URL Calendly calls for the subscription (its random callback token's path)."""
        with sqlite3.connect(self.sqlite) as db:
            token = json.loads(db.execute("SELECT data FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()[0])["callback_token"]
        return f"{self.url}/api/calendly/events/{token}"

    def redeliver(self) -> dict:
        done = subprocess.run([sys.executable, "-m", "shared", "redeliver"], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=600)
        return json.loads(done.stdout)


def signed_events(count: int, key: str, base_url: str = "https://api.calendly.com") -> list[tuple[bytes, str]]:
    """``count`` distinct invitee.created bodies with fresh signatures (re-sign before sending if slow)."""
    out = []
    for _ in range(count):
        body = json.dumps(sample_events.envelope("invitee.created", base_url), ensure_ascii=False).encode("utf-8")
        out.append((body, key))
    return out


def sign_headers(body: bytes, key: str) -> dict:
    return {"Content-Type": "application/json", signatures.HEADER: signatures.sign(body, key)}


AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
_AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's published dev key


@contextlib.contextmanager
def azurite(wanted: bool = True, workdir: str | None = None):
    """An in-memory Azurite on free loopback ports: yields its connection string, or None when
    not wanted or not installed (``npm ci`` installs it)."""
    if not wanted or not AZURITE.exists():
        yield None
        return
    ports = {service: free_port() for service in ("blob", "queue", "table")}
    args = [str(AZURITE), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--loose"]
    for service, port in ports.items():
        args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    workdir = workdir or tempfile.mkdtemp(prefix="bench-azurite-")
    with open(os.path.join(workdir, "azurite.log"), "wb") as log:
        proc = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", ports["table"])) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Azurite did not start")
            time.sleep(0.05)
        yield (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={_AZURITE_KEY};"
               + "".join(f"{s.capitalize()}Endpoint=http://127.0.0.1:{ports[s]}/devstoreaccount1;" for s in ports))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def bulk_record(store, deliveries) -> None:
    """Seed many deliveries fast, as the store itself writes them: on Table Storage, each delivery
    with its index row, in entity-group transactions of 50 pairs per subscription (2 threads); on
    SQLite the store's insert, all in one transaction."""
    from collections import defaultdict
    from concurrent.futures import ThreadPoolExecutor

    inner = getattr(store, "_inner", store)
    if inner.name == "sqlite":  # the store's own insert, in one SQLite transaction
        with inner._tx() as db:
            db.executemany("INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, data, body, version, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                           [(d.id, d.subscription_id, d.status.value, d.next_attempt_at, inner._delivery_row(d), d.body, d.updated_at)
                            for d in deliveries])
        return
    by_partition: dict[str, list] = defaultdict(list)
    for delivery in deliveries:
        by_partition[delivery.subscription_id].append(delivery)

    from shared.errors import StoreUnavailable
    from shared.store.tables import _Failed

    def write(items: list) -> None:
        for start in range(0, len(items), 50):
            operations = []
            for delivery in items[start:start + 50]:
                partition, row = inner._split(delivery.id)
                key = inner._index_key(delivery, row)
                operations += [("create", inner._delivery_entity(delivery, key)), ("create", {"PartitionKey": partition, "RowKey": key})]
            # Creates (Azurite looks an upsert's row up by scanning its whole table: quadratic seeding);
            # a transaction whose answer was lost is sent again, and "exists" then means it was applied.
            for attempt in range(5):
                try:
                    inner._transact(operations)
                    break
                except _Failed:
                    break
                except StoreUnavailable:
                    if attempt == 4:
                        raise

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, by_partition.values()))


def bench_subscription(i: int):
    """A stored subscription record for benchmarks that seed deliveries (id ``f"{i:032x}"``)."""
    from shared.models import HttpEndpoint, Subscription, SubscriptionState

    return Subscription(id=f"{i:032x}", target=HttpEndpoint(f"https://prod-00.westeurope.logic.azure.com/workflows/{i}/triggers/manual"),
                        events=["invitee.created"], scope="organization", organization="https://api.calendly.com/organizations/O",
                        user=None, group=None, signing_key="k", generation="g", state=SubscriptionState.ACTIVE)
