"""Shared fixtures: real servers on 127.0.0.1 (the local host, the Calendly sandbox, a
recording target) that clean up after themselves."""
from __future__ import annotations

pytest_plugins = ["tests.azurite"]

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.peers import free_port  # noqa: F401 - re-exported for the tests

try:
    from hypothesis import settings as hypothesis_settings

    # CI: the same examples every run (a red build is then a real regression, never a dice roll);
    # HYPOTHESIS_PROFILE=thorough locally digs far deeper.
    hypothesis_settings.register_profile("ci", derandomize=True)
    hypothesis_settings.register_profile("thorough", max_examples=5000)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))
except ImportError:  # pragma: no cover - hypothesis is in requirements-dev.txt
    pass

ROOT = Path(__file__).resolve().parent.parent
_FUNCTIONS = None


def functions_over(bridge) -> dict:
    """function_app's functions declared over ``bridge`` (as the local host builds them), by name."""
    import function_app
    from shared.composition import BridgeProvider

    return {fn.get_function_name(): fn for fn in function_app.build_app(BridgeProvider(lambda: bridge)).get_functions()}


def declared_functions():
    """function_app's functions (get_functions() may be called once per process)."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        import function_app

        _FUNCTIONS = function_app.app.get_functions()
    return _FUNCTIONS


class RecordingTarget:
    """A Logic App / Power Automate callback stand-in: records every request and answers
    with scripted statuses (then ``default``)."""

    def __init__(self):
        self.received: list[dict] = []
        self.script: list = []  # statuses, or (status, headers[, body bytes])
        self.default = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.server = None
        self.url = ""

    def respond(self, *statuses, default: int | None = None) -> None:
        with self._lock:
            self.script = list(statuses)
            if default is not None:
                self.default = default

    def __call__(self, environ, start_response):
        from devtools.servers import read_request

        request = read_request(environ)
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers.setdefault("content-type", "")
        with self._lock:
            step = self.script.pop(0) if self.script else self.default
            status, extra, reply = (tuple(step) + ({}, b"{}")[len(step) - 1:] if isinstance(step, tuple) else (step, {}, b"{}"))
            self.received.append({"path": request.path, "query": request.query, "headers": headers, "body": request.body,
                                  "status": status})
            self._cond.notify_all()
        if self.delay:
            time.sleep(self.delay)
        start_response(f"{status} X", [("Content-Type", "application/json"), *extra.items()])
        return [reply]

    def delivered(self) -> list[dict]:
        return [r for r in self.received if 200 <= r["status"] < 300]

    def wait_for(self, count: int, timeout: float = 10.0, delivered_only: bool = True) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                items = [r for r in self.received if not delivered_only or 200 <= r["status"] < 300]
                if len(items) >= count or time.monotonic() >= deadline:
                    return items
                self._cond.wait(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def target():
    from devtools.servers import BackgroundServer

    recorder = RecordingTarget()
    recorder.server = BackgroundServer(recorder, threads=8).start()
    recorder.url = recorder.server.url
    yield recorder
    recorder.server.stop()


@pytest.fixture(scope="session")
def _session_sandbox():
    from devtools.sandbox import Sandbox

    sandbox = Sandbox(pat="test-pat")
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(_session_sandbox):
    """The Calendly sandbox (one per session, reset for every test)."""
    requests.post(f"{_session_sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()
    requests.post(f"{_session_sandbox.url}/_sandbox/token", json={"pat": "test-pat"}, timeout=5).raise_for_status()
    return _session_sandbox


class LocalHost:
    """``python -m shared serve`` in a subprocess: the product as users run it."""

    def __init__(self, env: dict[str, str], port: int, cwd: Path = ROOT):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(env["BRIDGE_SQLITE_PATH"]).with_suffix(".log")

    def start(self, extra_args: list[str] | None = None) -> "LocalHost":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", str(self.port), *(extra_args or [])],
                                     cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"local host exited: {self.logs()}")
            try:
                requests.get(f"{self.url}/api/health", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"local host did not start: {self.logs()}")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.url}/api{path}", **kwargs)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Another ``python -m shared`` command against the same settings."""
        return subprocess.run([sys.executable, "-m", "shared", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


def clean_env() -> dict[str, str]:
    """The process environment without any of the bridge's settings, so what a developer or CI
    machine has set never changes what a test sees."""
    from shared.settings import Settings

    declared = set(Settings.declared())
    return {k: v for k, v in os.environ.items() if k not in declared and not k.startswith(("AzureWebJobs", "SANDBOX_"))}


def host_env(tmp_path: Path, sandbox_url: str, **overrides: str) -> dict[str, str]:
    env = clean_env()
    env.update({
        "CALENDLY_API_BASE": sandbox_url,
        "CALENDLY_PAT": "test-pat",
        "BRIDGE_SQLITE_PATH": str(tmp_path / "bridge.sqlite3"),
        "ALLOW_INSECURE_TARGETS": "true",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


@pytest.fixture
def make_host(tmp_path, sandbox):
    hosts: list[LocalHost] = []

    def make(port: int | None = None, args: list[str] | None = None, **overrides: str) -> LocalHost:
        port = port or free_port()
        env = host_env(tmp_path, sandbox.url, BRIDGE_PUBLIC_URL=f"http://127.0.0.1:{port}", **overrides)
        host = LocalHost(env, port)
        hosts.append(host)
        return host.start(args or ["--redeliver-interval", "0", "--reconcile-interval", "0"])

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def bridge(make_host):
    """A running local host wired to the sandbox, with the outbox loop off (tests drive it)."""
    return make_host()


def sandbox_hooks(sandbox) -> list[dict]:
    return requests.get(f"{sandbox.url}/_sandbox/hooks", timeout=5).json()["hooks"]


def sandbox_requests(sandbox) -> list[dict]:
    return requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()["requests"]


def simulate(sandbox, event: str, **body) -> dict:
    response = requests.post(f"{sandbox.url}/_sandbox/simulate", json={"event": event, **body}, timeout=30)
    response.raise_for_status()
    return response.json()


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
