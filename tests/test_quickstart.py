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


def test_the_readmes_follow_up_commands_act_on_the_running_demo(tmp_path):
    """The README's "Then try" lines, run as written (the interpreter and ports substituted) from
    the folder the demo runs in, reach the demo's sandbox, store and subscription."""
    import json
    import os
    import re

    ports = [free_port() for _ in range(3)]
    env = clean_env()
    env["PYTHONPATH"] = str(ROOT)
    log = tmp_path / "demo.log"
    block = re.search(r"through\. Then try.*?```bash\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert [line.split()[3] for line in lines if line.startswith(".venv/bin/python")] == ["simulate", "test-event", "reconcile"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--sandbox", "--port", str(ports[0]), "--sandbox-port",
                                 str(ports[1]), "--target-port", str(ports[2])], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "Try (from this folder" not in log.read_text("utf-8", "replace"):
                time.sleep(0.2)
            text = log.read_text("utf-8", "replace")
            sub_id = re.search(r"-m shared test-event ([0-9a-f]{32})", text).group(1)
            for line in lines:
                if line.startswith("curl"):
                    continue
                argv = line.replace(".venv/bin/python", sys.executable).replace("<id>", sub_id).split()
                if argv[3] == "simulate":
                    argv += ["--sandbox-url", f"http://127.0.0.1:{ports[1]}"]  # the README's default port, moved
                done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                if argv[3] == "test-event":
                    assert json.loads(done.stdout)["status"] == "delivered", done.stdout
                if argv[3] == "reconcile":
                    summary = json.loads(done.stdout)
                    assert not summary["errors"] and summary["healthy"] == 1, summary
            listed = requests.get(f"http://127.0.0.1:{ports[0]}/api/subscriptions", timeout=5).json()["value"]
            assert [s["id"] for s in listed] == [sub_id]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert not os.path.exists(tmp_path / ".bridge" / "running-demo.json")  # removed when the demo stops


def test_help_lists_the_commands_on_stdout():
    for args in ([], ["-h"], ["--help"]):
        done = subprocess.run([sys.executable, "-m", "shared", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stderr == ""
        assert all(name in done.stdout for name in ("serve", "sandbox", "simulate", "redeliver", "reconcile", "test-event"))


def test_the_readme_lists_every_event_the_api_accepts():
    import re

    from shared.events import SUBSCRIBABLE

    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## HTTP API", 1)[1].split("| method + route |", 1)[0]
    listed = re.findall(r"`([a-z_]+\.[a-z_]+)`", section)
    assert listed[0] == "invitee.rescheduled" and listed[1:] == list(SUBSCRIBABLE)  # named first as the bridge's own
