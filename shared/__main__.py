"""Command line: ``python -m shared <command>``.

serve       run the local host (the HTTP functions of function_app.py) on 127.0.0.1:7071
sandbox     run the local Calendly API stand-in on 127.0.0.1:7080
simulate    make the sandbox fire a signed event (e.g. ``simulate invitee.created``)
redeliver   send pending deliveries again now
reconcile   make Calendly's hooks and the bridge's records agree (recreate, repair, delete orphans)
test-event  send Calendly's sample payload for a subscription through the pipeline
preflight   check what the configured Calendly token can do (owner, role, scopes per event family)

serve, sandbox and simulate are development tools: they live in ``devtools`` (a checkout has it,
a deployment does not), and this module hands over to it by name.
"""
from __future__ import annotations

import importlib
import sys

from . import cli

DEVTOOLS = ("serve", "sandbox", "simulate")
USAGE = ("usage: python -m shared <command> [options]   (<command> --help: its options)\n\ncommands:\n"
         + "\n".join("  " + line if line else line for line in __doc__.strip().splitlines()[2:]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DEVTOOLS:
        try:
            tools = importlib.import_module("devtools.cli")
        except ModuleNotFoundError:
            print(f"error: '{argv[0]}' is a development tool: run it from a checkout of the repository", file=sys.stderr)
            return 2
        return tools.COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in cli.COMMANDS:
        return cli.COMMANDS[argv[0]](argv[1:])
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    print(f"error: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
