"""``streamsim up | status | down | env``: the local emulator stack."""

from __future__ import annotations

import json
import sys

from streamsim.runtime.cli import one_line, settings_from_args


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
    from streamsim.app import localstack

    try:
        # A corrupt stack.json is the stack's to report and replace, not an error here.
        settings = localstack.stack_settings(args)
        state = localstack.up(settings, bigtable_port=args.bigtable_port, pubsub_port=args.pubsub_port)
    except localstack.StackError as exc:
        print(f"streamsim up: {exc}", file=sys.stderr)
        return 1
    for note in state.get("notes", []):
        print(f"note: {note}")
    created = state["created"]
    actions = state.get("actions", {})
    for name, label in (("bigtable", "bigtable emulator "), ("pubsub", "pubsub emulator   ")):
        emulator = state[name]
        print(f"{label} {emulator['host']}  {actions.get(name, 'kept')} (pid {emulator['pid']})")
    made = ", ".join(f"{len(v)} {k}" for k, v in created.items() if v) or "nothing new (already provisioned)"
    print(f"created: {made}")
    print(f"state: {settings.state_dir / 'stack.json'}  (`streamsim down` stops it)")
    return 0


def run_status(args) -> int:
    from streamsim.app import localstack

    report = localstack.status(localstack.stack_settings(args))
    # Non-zero when something is down or missing, so scripts can `status && ...`;
    # the report goes to stdout either way, and the reason to stderr, in one line.
    problems = _status_problems(report)
    if args.json:
        print(json.dumps(report))
    else:
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
    if problems:
        print(one_line(f"streamsim status: {'; '.join(problems)} (run `streamsim up`)"), file=sys.stderr)
        return 1
    return 0


def _status_problems(report: dict) -> list[str]:
    problems = []
    for key, name in (("bigtable", "Bigtable"), ("pubsub", "Pub/Sub")):
        part = report[key]
        if not part["host"]:
            problems.append(f"no {name} emulator is set up")
        elif not part["reachable"]:
            problems.append(f"the {name} emulator at {part['host']} is not reachable")
    if report.get("state_error"):
        problems.append(report["state_error"])
    if report.get("error"):
        problems.append(f"the resources could not be listed: {report['error']}")
    elif report["missing"]:
        problems.append(f"{len(report['missing'])} tables, topics or subscriptions are missing")
    return problems


def run_down(args) -> int:
    from streamsim.app import localstack

    stopped = localstack.down(localstack.stack_settings(args))
    print("stopped " + "; ".join(stopped) if stopped else "nothing to stop")
    return 0


def run_env(args) -> int:
    for name, value in settings_from_args(args).emulator_env().items():
        print(f"export {name}={value}")
    return 0
