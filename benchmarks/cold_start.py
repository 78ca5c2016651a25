"""Cold start: a whole fresh process (interpreter start + import + indexing, spawn to exit) for
function_app, side by side with a bare azure-functions app with one route, median of 7; the time to the first answered request (index,
then GET /api/health, which composes the bridge and pings the store: what a cold instance's first
caller waits for beyond the host); plus `python -X importtime` top offenders.

    .venv/bin/python -m benchmarks.cold_start [--runs 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks.harness import ROOT

APP = "import function_app; function_app.app.get_functions()"
BARE = """
import azure.functions as func
app = func.FunctionApp()
@app.route(route="x")
def x(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("x")
app.get_functions()
"""
FIRST = """
import azure.functions as func
import function_app
[health] = [f for f in function_app.app.get_functions() if f.get_function_name() == "health"]
answer = health.get_user_function()(func.HttpRequest("GET", "http://127.0.0.1/api/health", body=b""))
assert answer.status_code == 200, answer.get_body()
"""
def _time(code: str, runs: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of a whole ``python -c code`` process, spawn to exit, in ms (the two apps
    alternate with each other run by run in ``cold_start``, so load on the machine hits both)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _first_request_ms(runs: int) -> float:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ.get("PATH", ""), "CALENDLY_PAT": "x", "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071",
               "BRIDGE_SQLITE_PATH": os.path.join(tmp, "cold.sqlite3")}
        return _time(FIRST, runs, env)


def offenders(limit: int = 8) -> list[tuple[str, float]]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", APP], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        depth = len(name) - len(name.lstrip())
        if depth <= 3:  # top-level imports and their direct children
            try:
                rows.append((name.strip(), int(cumulative.strip()) / 1000))
            except ValueError:
                continue
    return sorted(rows, key=lambda r: -r[1])[:limit]


def cold_start(runs: int = 7) -> dict:
    app, bare = [], []
    for _ in range(runs):  # interleaved, so a busy moment costs both alike
        app.append(_time(APP, 1))
        bare.append(_time(BARE, 1))
    app_ms, bare_ms = statistics.median(app), statistics.median(bare)
    return {"function_app_ms": app_ms, "bare_ms": bare_ms, "ratio": app_ms / bare_ms,
            "first_request_ms": _first_request_ms(runs), "offenders": offenders()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    r = cold_start(parser.parse_args(argv).runs)
    print(f"cold start (median): function_app {r['function_app_ms']:.0f} ms, bare app {r['bare_ms']:.0f} ms, "
          f"difference {r['function_app_ms'] - r['bare_ms']:.0f} ms, ratio {r['ratio']:.2f} (goal ≤ 1.5); "
          f"first answered request {r['first_request_ms']:.0f} ms")
    for name, ms in r["offenders"]:
        print(f"  {ms:7.1f} ms  {name}")
    return r


if __name__ == "__main__":
    main()
