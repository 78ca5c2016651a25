"""Command line: ``python -m shared <command>``.

serve       run the local host (the HTTP functions of function_app.py) on 127.0.0.1:7071
sandbox     run the local Calendly API stand-in on 127.0.0.1:7080
simulate    make the sandbox fire a signed event (e.g. ``simulate invitee.created``)
redeliver   send pending deliveries again now
reconcile   make Calendly's hooks and the bridge's records agree (recreate, repair, delete orphans)
test-event  send Calendly's sample payload for a subscription through the pipeline
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _settings_or_exit():
    from .settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared serve", description="Serve function_app's HTTP functions locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--sandbox", action="store_true", help="also run the Calendly sandbox and a console target, and show an event flowing through")
    parser.add_argument("--sandbox-port", type=int, default=7080)
    parser.add_argument("--target-port", type=int, default=7090)
    parser.add_argument("--redeliver-interval", type=float, default=5.0, help="seconds between outbox drains (0 disables)")
    parser.add_argument("--reconcile-interval", type=float, default=900.0, help="seconds between reconciliations (0 disables)")
    args = parser.parse_args(argv)
    _logging(os.environ.get("BRIDGE_LOG_LEVEL", "INFO"))
    sys.path.insert(0, os.getcwd())

    from .localhost import BackgroundWork, apply_local_defaults, make_app

    apply_local_defaults()
    public_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    os.environ.setdefault("BRIDGE_PUBLIC_URL", f"http://{public_host}:{args.port}")
    helpers = []
    if args.sandbox:
        from .console_target import ConsoleTarget
        from .sandbox import Sandbox

        sandbox = Sandbox(pat=os.environ.get("SANDBOX_PAT", "sandbox-pat"), host="127.0.0.1", port=args.sandbox_port)
        sandbox.start()
        target = ConsoleTarget(host="127.0.0.1", port=args.target_port)
        target.start()
        helpers = [sandbox, target]
        os.environ["CALENDLY_API_BASE"] = sandbox.url
        os.environ["CALENDLY_PAT"] = os.environ.get("SANDBOX_PAT", "sandbox-pat")
        if "BRIDGE_SQLITE_PATH" not in os.environ:
            # The sandbox forgets its hooks on exit, so the demo's store starts empty too.
            os.environ["BRIDGE_SQLITE_PATH"] = os.path.join(".bridge", "sandbox-demo.sqlite3")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(os.environ["BRIDGE_SQLITE_PATH"] + suffix):
                    os.remove(os.environ["BRIDGE_SQLITE_PATH"] + suffix)
        print(f"Calendly sandbox on {sandbox.url}; console target on {target.url}", flush=True)
    _settings_or_exit()

    import waitress

    server = waitress.create_server(make_app(), host=args.host, port=args.port, threads=args.threads,
                                    max_request_body_size=8 * 1024 * 1024, ident="calendly-bridge")
    loop = None
    if args.redeliver_interval > 0 or args.reconcile_interval > 0:
        loop = BackgroundWork(args.redeliver_interval, args.reconcile_interval)
    if loop:
        loop.start()
    print(f"Calendly trigger bridge listening on {os.environ['BRIDGE_PUBLIC_URL']}/api", flush=True)
    if args.sandbox:
        threading.Thread(target=_demo, args=(os.environ["BRIDGE_PUBLIC_URL"], helpers[0], helpers[1]), daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if loop:
            loop.stopped.set()
        server.close()
        for helper in helpers:
            helper.stop()
    return 0


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
        print(f"\nTry:  python -m shared simulate invitee.canceled --sandbox-url {sandbox.url}\n"
              f"      curl {bridge_url}/api/subscriptions/{sub.get('id')}\n", flush=True)
    except Exception as exc:  # noqa: BLE001 - the demo is a courtesy; the host keeps running
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)


def cmd_redeliver(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared redeliver", description="Send pending deliveries again now.")
    parser.add_argument("--due-only", action="store_true", help="only those whose backoff has elapsed")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args(argv)
    _logging(os.environ.get("BRIDGE_LOG_LEVEL", "WARNING"))
    from .errors import BridgeError

    bridge = _local_bridge()
    try:
        summary = bridge.deliveries.redeliver(due_only=args.due_only, limit=args.limit)
    except BridgeError as exc:
        print(json.dumps(exc.body()), file=sys.stderr)
        return 1
    finally:
        bridge.close()
    print(json.dumps(summary))
    return 0


def _local_bridge():
    from .bridge import Bridge
    from .localhost import apply_local_defaults

    apply_local_defaults()
    return Bridge(_settings_or_exit())


def cmd_reconcile(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m shared reconcile",
                            description="Recreate lost or disabled Calendly hooks, finish interrupted (un)subscribes, delete orphan hooks.").parse_args(argv)
    _logging(os.environ.get("BRIDGE_LOG_LEVEL", "WARNING"))
    from .reconcile import reconcile

    bridge = _local_bridge()
    try:
        summary = reconcile(bridge)
    finally:
        bridge.close()
    print(json.dumps(summary))
    return 1 if summary["errors"] else 0


def cmd_test_event(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared test-event",
                                     description="Send Calendly's sample payload for a subscription through the pipeline.")
    parser.add_argument("subscription_id")
    parser.add_argument("--event", help="one of the subscription's events (default: its first)")
    args = parser.parse_args(argv)
    _logging(os.environ.get("BRIDGE_LOG_LEVEL", "WARNING"))
    from .callbacks import send_test_event
    from .errors import BridgeError

    bridge = _local_bridge()
    try:
        response = send_test_event(bridge, args.subscription_id, args.event)
    except BridgeError as exc:
        print(json.dumps(exc.body()), file=sys.stderr)
        return 1
    finally:
        bridge.close()
    print(response.body.decode("utf-8"))
    return 0 if response.status < 300 else 1


def cmd_sandbox(argv: list[str]) -> int:
    from .sandbox import main_sandbox

    _logging("INFO")
    return main_sandbox(argv)


def cmd_simulate(argv: list[str]) -> int:
    from .sandbox import main_simulate

    return main_simulate(argv)


COMMANDS = {"serve": cmd_serve, "sandbox": cmd_sandbox, "simulate": cmd_simulate, "redeliver": cmd_redeliver,
            "reconcile": cmd_reconcile, "test-event": cmd_test_event}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
