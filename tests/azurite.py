"""Azurite (the npm package, pinned in package.json/package-lock.json) for the storage tests.

`azurite`: one in-memory Azurite per session on free loopback ports; yields a connection string
for them. `dev_storage_azurite`: one on Azurite's default ports (10000-10002), for the
``UseDevelopmentStorage=true`` connection string, skipped when those ports are taken.
Both install Azurite with `npm ci` when node_modules lacks it, and stop it at the end.
Without npm the tests that need Azurite skip, except under CI (``CI`` set), where they fail.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.peers import free_port

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's published dev key
DEFAULT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
TIMINGS: dict[str, float] = {}  # install and startup seconds, printed in the test summary


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Node binds: TIME_WAIT leftovers don't count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def connection_string(ports: dict[str, int]) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{ports['blob']}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{ports['queue']}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{ports['table']}/{ACCOUNT};")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run `npm ci` first)")
    pytest.skip(reason)


def _install() -> None:
    if BINARY.exists():
        return
    if not shutil.which("npm"):
        _unavailable("Azurite is not installed and npm is not on PATH (install Node.js 18+, then `npm ci`)")
    started = time.monotonic()
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    TIMINGS["install_seconds"] = time.monotonic() - started
    if not BINARY.exists():
        _unavailable(f"`npm ci` did not install Azurite: {(done.stderr or done.stdout)[-1000:]}")


class Azurite:
    """One Azurite process on the given loopback ports, in memory."""

    def __init__(self, ports: dict[str, int], workdir: Path):
        self.ports = ports
        self.log = workdir / "azurite.log"
        self.connection_string = connection_string(ports)
        args = [str(BINARY), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--loose"]
        for service, port in ports.items():
            args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
        started = time.monotonic()
        with open(self.log, "wb") as log:  # a file, not a pipe: a full pipe would stall Azurite
            self.proc = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not all(_answers(p) for p in ports.values()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Azurite did not start: {self.log.read_text('utf-8', 'replace')[-2000:]}")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> str:
    """A connection string for a session-wide Azurite on free loopback ports."""
    _install()
    server = Azurite({service: free_port() for service in DEFAULT_PORTS}, tmp_path_factory.mktemp("azurite"))
    TIMINGS["startup_seconds"] = server.startup_seconds
    yield server.connection_string
    server.stop()


@pytest.fixture(scope="session")
def dev_storage_azurite(tmp_path_factory) -> str:
    """Azurite on its default ports, so ``UseDevelopmentStorage=true`` reaches it."""
    if not all(_port_free(p) for p in DEFAULT_PORTS.values()):
        pytest.skip("Azurite's default ports 10000-10002 are in use (a developer's Azurite?); "
                    "UseDevelopmentStorage=true is covered by the endpoint mapping test")
    _install()
    server = Azurite(dict(DEFAULT_PORTS), tmp_path_factory.mktemp("azurite-default"))
    yield "UseDevelopmentStorage=true"
    server.stop()


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("azurite: " + ", ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in TIMINGS.items()))
