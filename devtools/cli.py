"""The development commands ``python -m shared serve|sandbox|simulate`` (handed over from
``shared.__main__``): the local host, alone or with the sandbox, a console target and a demo."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time

from shared.cli import configure_logging, settings_or_exit
from shared.composition import BridgeProvider, compose
from shared.settings import RUNNING_DEMO_FILE, Settings, local_environment

from .localhost import MAX_BODY_BYTES, BackgroundWork, make_app

# The local development host's defaults (as ``func start`` with the sample settings): http and
# loopback targets are allowed unless local.settings.json or the environment says otherwise.
# Only here: the product's commands (shared/cli.py) keep the deployed defaults.
LOCAL_DEFAULTS = {"ALLOW_INSECURE_TARGETS": "true"}


def _serve_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shared serve", description="Serve function_app's HTTP functions locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--sandbox", action="store_true",
                        help="also run the Calendly sandbox and a console target, and show an event flowing through")
    parser.add_argument("--sandbox-port", type=int, default=7080)
    parser.add_argument("--target-port", type=int, default=7090)
    parser.add_argument("--redeliver-interval", type=float, default=5.0, help="seconds between retries of due deliveries (0 disables)")
    parser.add_argument("--reconcile-interval", type=float, default=900.0, help="seconds between reconciliations (0 disables)")
    return parser.parse_args(argv)


def _start_sandbox(args: argparse.Namespace, environment: dict[str, str]) -> list:
    """The sandbox and the console target; points the settings at the sandbox."""
    from .console_target import ConsoleTarget
    from .sandbox import DEFAULT_PAT, Sandbox

    pat = os.environ.get("SANDBOX_PAT") or DEFAULT_PAT
    sandbox = Sandbox(pat=pat, host="127.0.0.1", port=args.sandbox_port).start()
    target = ConsoleTarget(host="127.0.0.1", port=args.target_port).start()
    environment.update(CALENDLY_API_BASE=sandbox.url, CALENDLY_PAT=pat)
    if "BRIDGE_SQLITE_PATH" not in environment:
        # The sandbox forgets its hooks on exit, so the demo's store starts empty too.
        path = environment["BRIDGE_SQLITE_PATH"] = os.path.join(".bridge", "sandbox-demo.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    print(f"Calendly sandbox on {sandbox.url}; console target on {target.url}", flush=True)
    return [sandbox, target]


def cmd_serve(argv: list[str]) -> int:
    args = _serve_arguments(argv)
    public_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    # demo="": a host never takes another running demo's settings; only the product's commands do.
    environment = local_environment({**LOCAL_DEFAULTS, "BRIDGE_PUBLIC_URL": f"http://{public_host}:{args.port}"}, demo="")
    helpers = _start_sandbox(args, environment) if args.sandbox else []
    settings = settings_or_exit(lambda: Settings.from_env(environment))
    configure_logging(settings.log_level)
    sys.path.insert(0, os.getcwd())
    functions = importlib.import_module("function_app")
    bridge = BridgeProvider(lambda: compose(settings))
    app = functions.build_app(bridge)  # the same functions the host indexes, over this bridge

    import waitress

    server = waitress.create_server(make_app(app), host=args.host, port=args.port, threads=args.threads,
                                    max_request_body_size=MAX_BODY_BYTES, ident="calendly-bridge")
    loop = None
    if args.redeliver_interval > 0 or args.reconcile_interval > 0:
        loop = BackgroundWork(bridge, args.redeliver_interval, args.reconcile_interval)
        loop.start()
    print(f"Calendly trigger bridge listening on {settings.public_url}/api", flush=True)
    if args.sandbox:
        _announce_demo(environment, settings)
        threading.Thread(target=_demo, args=(settings.public_url, *helpers), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as on Ctrl+C: the finally below runs
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if args.sandbox:
            _retire_demo()
        if loop:
            loop.stopped.set()
        server.close()
        for helper in helpers:
            helper.stop()
    return 0


def _announce_demo(environment: dict[str, str], settings: Settings) -> None:
    """Tell the product's commands run from this folder which settings the demo runs with (the
    sandbox's URL and development PAT, the demo's store), so they act on it (shared.settings)."""
    keys = ("CALENDLY_API_BASE", "CALENDLY_PAT", "BRIDGE_PUBLIC_URL")
    running = {k: environment[k] for k in keys if environment.get(k)}
    running["BRIDGE_SQLITE_PATH"] = os.path.abspath(environment["BRIDGE_SQLITE_PATH"])
    running["ALLOW_INSECURE_TARGETS"] = "true" if settings.allow_insecure_targets else "false"
    os.makedirs(os.path.dirname(RUNNING_DEMO_FILE), exist_ok=True)
    with open(RUNNING_DEMO_FILE, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "settings": running}, fh)


def _retire_demo() -> None:
    try:
        if running_demo_pid() == os.getpid():
            os.remove(RUNNING_DEMO_FILE)
    except OSError:
        pass


def running_demo_pid() -> int | None:
    try:
        with open(RUNNING_DEMO_FILE, encoding="utf-8") as fh:
            return int(json.load(fh)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _demo(bridge_url: str, sandbox, target) -> None:
    """Subscribe the console target, then book a (simulated) meeting, so it shows up."""
    import requests

    time.sleep(0.3)
    try:
        response = requests.post(f"{bridge_url}/api/subscriptions", timeout=30,
                                 json={"url": f"{target.url}/flow", "events": ["invitee.created", "invitee.canceled"]})
        sub = response.json()
        print(f"\nSubscribed the console target: {response.status_code} Location: {response.headers.get('Location')}", flush=True)
        result = sandbox.app.simulate("invitee.created")
        statuses = [d.get("status") for d in result.get("deliveries", [])]
        print(f"Simulated invitee.created; Calendly got {statuses} from the bridge.", flush=True)
        python = os.path.relpath(sys.executable) if sys.prefix != sys.base_prefix else sys.executable
        print(f"\nTry (from this folder, while this runs):\n"
              f"  {python} -m shared simulate invitee.canceled --sandbox-url {sandbox.url}\n"
              f"  {python} -m shared test-event {sub.get('id')}\n"
              f"  {python} -m shared reconcile\n"
              f"  curl -s {bridge_url}/api/subscriptions/{sub.get('id')}\n", flush=True)
    except Exception as exc:  # noqa: BLE001 - the demo is a courtesy; the host keeps running
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)


def cmd_sandbox(argv: list[str]) -> int:
    from .sandbox import main_sandbox

    configure_logging("INFO")
    return main_sandbox(argv)


def cmd_simulate(argv: list[str]) -> int:
    from .sandbox import main_simulate

    return main_simulate(argv)


COMMANDS = {"serve": cmd_serve, "sandbox": cmd_sandbox, "simulate": cmd_simulate}
