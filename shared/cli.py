"""The product's own commands (``python -m shared redeliver|reconcile|test-event``): each
composes the bridge from the local settings (environment over local.settings.json), does one
job, prints JSON and exits."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from .composition import Bridge, compose
from .errors import BridgeError, SettingsError
from .settings import Settings

# The product's commands run where the bridge is deployed, so they take the deployed defaults:
# the SSRF guard stays on unless the environment or local.settings.json sets
# ALLOW_INSECURE_TARGETS=true. Only the local development host (devtools) allows insecure targets
# by default.


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def settings_or_exit(settings: Callable[[], Settings]) -> Settings:
    """The settings, or one clear line on stderr and exit status 2 (never a traceback)."""
    try:
        return settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(job: Callable[[Bridge], int]) -> int:
    settings = settings_or_exit(lambda: Settings.local())
    configure_logging(settings.log_level)  # to stderr; the command's JSON goes to stdout
    bridge = compose(settings)
    try:
        return job(bridge)
    except BridgeError as exc:
        print(json.dumps(exc.body()), file=sys.stderr)
        return 1
    finally:
        bridge.close()


def cmd_redeliver(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared redeliver", description="Send pending deliveries again now.")
    parser.add_argument("--due-only", action="store_true", help="only those whose backoff has elapsed")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args(argv)

    def job(bridge: Bridge) -> int:
        print(json.dumps(bridge.deliveries.retry_due(due_only=args.due_only, limit=args.limit)))
        return 0

    return _run(job)


def cmd_reconcile(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m shared reconcile", description="Recreate lost or disabled Calendly hooks, "
                            "finish interrupted (un)subscribes, delete orphan hooks.").parse_args(argv)

    def job(bridge: Bridge) -> int:
        report = bridge.reconciler.reconcile()
        print(json.dumps(report.as_dict()))
        return 1 if report.errors else 0

    return _run(job)


def cmd_test_event(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared test-event",
                                     description="Send Calendly's sample payload for a subscription through the pipeline.")
    parser.add_argument("subscription_id")
    parser.add_argument("--event", help="one of the subscription's events (default: its first)")
    args = parser.parse_args(argv)

    def job(bridge: Bridge) -> int:
        response = bridge.callbacks.send_test_event(args.subscription_id, args.event)
        print(response.body.decode("utf-8"))
        return 0 if response.status < 300 else 1

    return _run(job)


def cmd_preflight(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared preflight",
                                     description="Check what the configured Calendly token can do (whose it is, its role, "
                                                 "its scopes per event family), leaving nothing behind in Calendly.")
    parser.add_argument("--account", default="default",
                        help="the Calendly account whose token to check (default: the settings' PAT)")
    args = parser.parse_args(argv)

    def job(bridge: Bridge) -> int:
        from .errors import BridgeError
        from .preflight import preflight

        try:
            calendly = bridge.accounts.client(args.account)
        except BridgeError as exc:
            print(json.dumps({"ok": False, "account": args.account, "error": exc.body()["error"]}, indent=1))
            return 1
        report = {"account": args.account, **preflight(calendly, bridge.settings.public_url)}
        print(json.dumps(report, indent=1))
        return 0 if report["ok"] else 1

    return _run(job)


COMMANDS = {"redeliver": cmd_redeliver, "reconcile": cmd_reconcile, "test-event": cmd_test_event,
            "preflight": cmd_preflight}
