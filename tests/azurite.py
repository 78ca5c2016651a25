"""Azurite (npm) for the storage tests: installed by scripts/test.sh (`npm ci`), started here
on free loopback ports, in memory, and stopped at the end of the session."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT, free_port

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _wait(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists() and shutil.which("npm"):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=False, timeout=600)
    if not binary.exists():
        pytest.skip("Azurite is not installed (scripts/test.sh runs `npm ci`; needs Node.js and npm)")
    ports = {"blob": free_port(), "queue": free_port(), "table": free_port()}
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen([str(binary), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
                             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1",
                             "--tableHost", "127.0.0.1", "--blobPort", str(ports["blob"]), "--queuePort", str(ports["queue"]),
                             "--tablePort", str(ports["table"])], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not all(_wait(p) for p in ports.values()):
            proc.kill()
            pytest.fail(f"Azurite did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        yield (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
               f"BlobEndpoint=http://127.0.0.1:{ports['blob']}/{ACCOUNT};"
               f"QueueEndpoint=http://127.0.0.1:{ports['queue']}/{ACCOUNT};"
               f"TableEndpoint=http://127.0.0.1:{ports['table']}/{ACCOUNT};")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
