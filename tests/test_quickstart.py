"""The quickstart: one command shows a booking flow through the bridge."""
import subprocess
import sys
import time

import requests

from tests.conftest import ROOT, clean_env, free_port


def test_serve_sandbox_shows_an_event_flowing_through(tmp_path):
    ports = [free_port() for _ in range(3)]
    env_cmd = [sys.executable, "-m", "shared", "serve", "--sandbox", "--port", str(ports[0]),
               "--sandbox-port", str(ports[1]), "--target-port", str(ports[2])]
    log = tmp_path / "demo.log"
    import os

    env = clean_env()
    env["BRIDGE_SQLITE_PATH"] = str(tmp_path / "demo.sqlite3")
    with open(log, "wb") as out:
        proc = subprocess.Popen(env_cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "Calendly got" not in log.read_text("utf-8", "replace"):
                time.sleep(0.2)
            text = log.read_text("utf-8")
            assert "Simulated invitee.created; Calendly got [200]" in text, text
            assert "[target] invitee.created" in text and "Zoë Ångström" in text
            again = subprocess.run([sys.executable, "-m", "shared", "simulate", "invitee.canceled", "--sandbox-url",
                                    f"http://127.0.0.1:{ports[1]}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert again.returncode == 0 and ": 200 " in again.stdout, again.stdout + again.stderr
            subs = requests.get(f"http://127.0.0.1:{ports[0]}/api/subscriptions", timeout=5).json()["value"]
            assert len(subs) == 1 and subs[0]["state"] == "active"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_invalid_setting_stops_serve_with_one_clear_error(tmp_path):
    import os

    env = clean_env()
    env.update(SIGNATURE_TOLERANCE_SECONDS="soon", BRIDGE_SQLITE_PATH=str(tmp_path / "x.sqlite3"))
    done = subprocess.run([sys.executable, "-m", "shared", "serve", "--port", str(free_port())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "SIGNATURE_TOLERANCE_SECONDS is invalid" in done.stderr and "valid integer" in done.stderr and "'soon'" in done.stderr


def test_unknown_command_prints_usage():
    done = subprocess.run([sys.executable, "-m", "shared", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "serve" in done.stderr and "reconcile" in done.stderr
