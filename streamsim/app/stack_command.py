"""``streamsim up | status | down | env``: the local emulator stack."""

from __future__ import annotations

import json
import sys

from streamsim.app import localstack
from streamsim.runtime.cli import settings_from_args


def register(subparsers, parent) -> None:
    up = subparsers.add_parser("up", parents=[parent], help="start the emulators and create tables and topics")
    up.add_argument("--bigtable-port", type=int, help="default: 8086 if free, else any free port")
    up.add_argument("--pubsub-port", type=int, help="default: 8085 if free, else any free port")
    up.set_defaults(run=run_up)

    status = subparsers.add_parser("status", parents=[parent], help="report emulators, tables and topics")
    status.add_argument("--json", action="store_true", help="one JSON object (keys are stable)")
    status.set_defaults(run=run_status)

    down = subparsers.add_parser("down", parents=[parent], help="stop the emulators `up` started")
    down.set_defaults(run=run_down)

    env = subparsers.add_parser("env", parents=[parent], help="print shell exports for the running stack")
    env.set_defaults(run=run_env)


def run_up(args) -> int:
    settings = settings_from_args(args)
    try:
        state = localstack.up(settings, bigtable_port=args.bigtable_port, pubsub_port=args.pubsub_port)
    except localstack.StackError as exc:
        print(f"streamsim up: {exc}", file=sys.stderr)
        return 1
    created = state["created"]
    print(f"bigtable emulator  {state['bigtable']['host']}  (pid {state['bigtable']['pid']})")
    print(f"pubsub emulator    {state['pubsub']['host']}  (pid {state['pubsub']['pid']})")
    made = ", ".join(f"{len(v)} {k}" for k, v in created.items() if v) or "nothing new (already provisioned)"
    print(f"created: {made}")
    print(f"state: {settings.state_dir / 'stack.json'}  (`streamsim down` stops it)")
    return 0


def run_status(args) -> int:
    report = localstack.status(settings_from_args(args))
    # Non-zero when something is down or missing, so scripts can `status && ...`.
    healthy = report["bigtable"]["reachable"] and report["pubsub"]["reachable"] and not report["missing"]
    if args.json:
        print(json.dumps(report))
        return 0 if healthy else 1
    for name in ("bigtable", "pubsub"):
        part = report[name]
        state = "reachable" if part["reachable"] else "NOT reachable"
        print(f"{name:9} {part['host'] or '(Google Cloud)'}  {state}")
    print(f"project   {report['project']}  instance {report['instance']}")
    print("tables    " + ", ".join(report["tables"].values()))
    print("topics    " + ", ".join(report["topics"].values()))
    print("subs      " + ", ".join(report["subscriptions"].values()))
    if report["missing"]:
        print("missing   " + ", ".join(report["missing"]) + "  (run `streamsim up`)")
    return 0 if healthy else 1


def run_down(args) -> int:
    stopped = localstack.down(settings_from_args(args))
    print("stopped " + "; ".join(stopped) if stopped else "nothing to stop")
    return 0


def run_env(args) -> int:
    for name, value in settings_from_args(args).emulator_env().items():
        print(f"export {name}={value}")
    return 0
