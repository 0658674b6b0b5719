"""The `unbind` command: one entry point for running the system locally.

    unbind up [--database-url URL] [--no-kafka] [--port-offset N]   start and supervise everything
    unbind down | status                                            stop / inspect it
    unbind migrate [--database-url URL] | seed                      databases only
    unbind token --user ID [--role customer|ops|reviewer|rules_admin|service] [--ttl S]  a development JWT
    unbind login-link                                               a one-time sign-in link to the dashboard
    unbind keys generate --out DIR [--compose]                      a deployment's own keys and secrets
    unbind demo [--step-up|--review] [--approve] [--repay] [--pause]   Zhang San's unbind, live, on `up`
    unbind dlq list [--json] | dlq replay --id ID|--all [--force]   dead letters: see them, publish them again
    unbind kafka up|down|status|secrets · unbind postgres up|down|status   one piece of infrastructure
    unbind docs [--out DIR] [--check]                               AsyncAPI, event schemas, OpenAPI
    unbind risk evaluate [--population N] [--seed S] [--pattern P]...   rules and anomaly model, measured

Every command works on one var dir (`--var-dir`, default `$UNBIND_VAR_DIR` or `./var`), where
the SQLite databases, logs, SMS sink, broker and pid files live; two var dirs are two independent
stacks. The command's own output is for people; the services' JSON logs go to `<var>/logs/`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared.auth import ROLES
from tools import kafka, postgres
from tools.errors import InfraError


def _default_var_dir() -> str:
    return os.environ.get("UNBIND_VAR_DIR") or "var"


def build_parser() -> argparse.ArgumentParser:
    # --var-dir is accepted before or after the command; SUPPRESS keeps a later one from
    # resetting an earlier one to the default.
    var_dir = argparse.ArgumentParser(add_help=False)
    var_dir.add_argument(
        "--var-dir", default=argparse.SUPPRESS, help="state folder (default: $UNBIND_VAR_DIR or ./var)"
    )
    parser = argparse.ArgumentParser(
        prog="unbind", description="Run the unbind services locally.", parents=[var_dir]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text in (
        ("kafka", "the local Kafka broker: up|down|status, and secrets for compose or Kubernetes"),
        ("postgres", "the local PostgreSQL cluster: up|down|status"),
    ):
        sub = commands.add_parser(name, help=text, description=text, add_help=False)
        sub.add_argument(
            "args", nargs=argparse.REMAINDER, help="passed to the sub-command (try `unbind %(prog)s -h`)"
        )

    migrate = commands.add_parser(
        "migrate", parents=[var_dir], help="bring every service database to the newest schema"
    )
    migrate.add_argument(
        "--database-url",
        help=(
            "PostgreSQL server URL without a database (default: $UNBIND_DATABASE_SERVER_URL; without either, "
            "SQLite files in the var dir)"
        ),
    )

    seed = commands.add_parser(
        "seed", parents=[var_dir], help="add the demo customers to empty service databases"
    )
    seed.add_argument("--database-url", help="as for migrate")

    token = commands.add_parser(
        "token", parents=[var_dir], help="print a development JWT, signed with this installation's own keys"
    )
    token.add_argument(
        "--user",
        help=(
            "subject (user id), e.g. u-zhangsan; an ops token defaults to ops-admin; a service token names "
            "the service"
        ),
    )
    token.add_argument(
        "--role", action="append", choices=sorted(ROLES), help="role claim, repeatable (default: customer)"
    )
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default 900)")
    token.add_argument(
        "--audience",
        action="append",
        help="aud claim, repeatable, e.g. unbind-binding (default: every service)",
    )

    login = commands.add_parser(
        "login-link",
        parents=[var_dir],
        help="print a one-time sign-in link to the dashboard (valid 10 minutes)",
    )
    login.add_argument("--user", default=None, help="the ops user it signs in (default ops-admin)")
    login.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="the stack's port offset when no `up` of this var dir says",
    )

    keys = commands.add_parser("keys", help="the keys and secrets of a deployment (compose, Kubernetes)")
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = key_actions.add_parser(
        "generate", help="write a new JWKS, private keys and secrets.env into a folder of mode 0700"
    )
    generate.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder (created; keys already there are kept)",
    )
    generate.add_argument(
        "--compose",
        action="store_true",
        help=(
            "make the files the services read 0644 (still in the 0700 folder): compose mounts them with "
            "their host mode"
        ),
    )

    up = commands.add_parser(
        "up",
        parents=[var_dir],
        help="start Kafka, migrate, seed, run and supervise the four services and the dashboard",
    )
    up.add_argument(
        "--database-url",
        help=(
            "PostgreSQL server URL (postgresql+asyncpg://user@host:port): one database unbind_<service> each "
            "(default: $UNBIND_DATABASE_SERVER_URL, else SQLite)"
        ),
    )
    up.add_argument(
        "--no-kafka",
        action="store_true",
        help="start no broker; the services use $KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092)",
    )
    up.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="add N to every service port (default: $UNBIND_PORT_OFFSET or 0)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every service to be ready (default 60)",
    )
    up.add_argument(
        "--instances",
        type=int,
        default=1,
        help=(
            "processes per service for the four services, sharing each service's port (default 1; the "
            "dashboard runs once)"
        ),
    )

    commands.add_parser(
        "down", parents=[var_dir], help="stop what `up` started, and this var dir's broker and PostgreSQL"
    )

    device = commands.add_parser(
        "device", parents=[var_dir], help="the demo phone: pass the biometric step of a verification"
    )
    device.add_argument(
        "action", choices=["sign"], help="sign: challenge, sign with the demo device key, submit"
    )
    device.add_argument(
        "--verification", required=True, help="the verification id (from GET /v1/unbind-requests/{id})"
    )
    device.add_argument(
        "--user",
        default="u-zhangsan",
        help="the device owner (default u-zhangsan, whose phone is the demo device)",
    )
    device.add_argument(
        "--url",
        default=None,
        help="verification service URL (default http://127.0.0.1:8002, shifted by $UNBIND_PORT_OFFSET)",
    )

    demo = commands.add_parser(
        "demo",
        parents=[var_dir],
        help=(
            "play Zhang San's unbind live against a running `unbind up`: every step, and each event as it "
            "arrives (development only)"
        ),
    )
    demo.add_argument(
        "--step-up",
        action="store_true",
        help="request from a newly enrolled phone key: risk asks for the SMS code and the biometric",
    )
    demo.add_argument(
        "--review",
        action="store_true",
        help="a new phone, and his phone number changed 3 days ago: risk sends the request to ops review",
    )
    demo.add_argument(
        "--approve",
        action="store_true",
        help="if risk asks for a review, decide it as ops (approve) instead of waiting for someone to",
    )
    demo.add_argument(
        "--repay",
        action="store_true",
        help="repay the due instalment by hand instead of acknowledging the blocker",
    )
    demo.add_argument(
        "--pause",
        action="store_true",
        help=(
            "after the unbind, bind another account and pause its auto-debit for 2 months instead of "
            "unbinding it"
        ),
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for an ops review decision (default 600)",
    )
    demo.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="the stack's port offset when no `up` of this var dir says (default: $UNBIND_PORT_OFFSET or 0)",
    )

    chaos = commands.add_parser(
        "chaos",
        help=(
            "N unbind flows on a stack of its own while every process is SIGKILLed twice and the broker "
            "restarted; then check nothing was lost or doubled"
        ),
    )
    chaos.add_argument(
        "--flows",
        type=int,
        default=300,
        help="unbind flows to drive (default 300; the documented full run is 10000)",
    )
    chaos.add_argument("--concurrency", type=int, default=40, help="flows in flight at once (default 40)")
    chaos.add_argument(
        "--kills-per-service", type=int, default=2, help="SIGKILLs of each service process (default 2)"
    )
    chaos.add_argument("--broker-restarts", type=int, default=1, help="Kafka broker restarts (default 1)")
    chaos.add_argument(
        "--seed", type=int, default=None, help="random seed of the path mix and the fault moments"
    )
    chaos.add_argument(
        "--database-url",
        help="PostgreSQL server URL without a database (default: SQLite files in the run's var dir)",
    )
    chaos.add_argument(
        "--chaos-dir", type=Path, default=None, help="the run's own var dir (default var/chaos/<time>)"
    )
    chaos.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")

    add_dlq_parser(commands, var_dir)

    bench = commands.add_parser(
        "bench",
        parents=[var_dir],
        help=(
            "end-to-end unbind throughput and latency of the running stack, beside the raw Kafka and "
            "database ceilings"
        ),
    )
    bench.add_argument("--workflows", type=int, default=1000, help="unbind workflows to drive (default 1000)")
    bench.add_argument(
        "--rate",
        type=float,
        default=None,
        help="new workflows per second (default: as fast as --concurrency allows)",
    )
    bench.add_argument(
        "--concurrency", type=int, default=200, help="workflows in flight at most (default 200)"
    )
    bench.add_argument(
        "--step-up",
        type=float,
        default=0.0,
        help="fraction of workflows on the step-up path (code and biometric), 0..1 (default 0)",
    )
    bench.add_argument(
        "--json",
        type=Path,
        default=None,
        help=(
            "where to write the report (default tools/bench/results/<time>.json, with a PNG chart beside it)"
        ),
    )
    bench.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="the stack's port offset when no `up` of this var dir says",
    )
    bench.add_argument(
        "--no-ceilings", action="store_true", help="skip the raw Kafka and database measurements"
    )
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also write a py-spy flame graph (SVG) of each service, beside the JSON report",
    )
    bench.add_argument(
        "--no-skeleton",
        action="store_true",
        help="skip the skeleton: the same shape without business logic, the framework's own ceiling",
    )
    bench.add_argument(
        "--skeleton-workflows",
        type=int,
        default=None,
        help="workflows to drive through the skeleton (default: --workflows)",
    )

    docs_help = (
        "write the AsyncAPI document of the topic, a JSON Schema per event type and each app's OpenAPI "
        "document, from the code"
    )
    docs = commands.add_parser("docs", help=docs_help, description=docs_help)
    docs.add_argument(
        "--out",
        type=Path,
        default=Path("docs"),
        metavar="DIR",
        help="folder to write to (default ./docs: run from the repository root)",
    )
    docs.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming the files that differ from the code (for CI)",
    )

    add_risk_parser(commands)

    status = commands.add_parser("status", parents=[var_dir], help="show what runs")
    status.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="ports to probe when no `up` runs (default: $UNBIND_PORT_OFFSET or 0)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def add_risk_parser(commands: argparse._SubParsersAction) -> None:
    from services.risk.evaluation import Pattern

    risk = commands.add_parser("risk", help="risk's anomaly model")
    actions = risk.add_subparsers(dest="risk_command", required=True, metavar="ACTION")
    evaluate_help = (
        "precision and recall of the rules, of the anomaly model at its promoted threshold and of both, "
        "on a synthetic population with injected account-takeover patterns (in this process)"
    )
    evaluate = actions.add_parser("evaluate", help=evaluate_help, description=evaluate_help)
    evaluate.add_argument("--population", type=int, default=None, help="requests to replay (default 2000)")
    evaluate.add_argument("--seed", type=int, default=None, help="the population's seed (default 1)")
    evaluate.add_argument("--attack-share", type=float, default=None, help="share of attacks (default 0.05)")
    evaluate.add_argument(
        "--pattern",
        dest="patterns",
        action="append",
        choices=[pattern.value for pattern in Pattern],
        default=None,
        help="an attack pattern to inject; repeatable (default: all)",
    )
    evaluate.add_argument("--threshold", type=float, default=None, help="the model's threshold (default 0.8)")
    evaluate.add_argument(
        "--window", type=int, default=None, help="the model's window (default: UNBIND_MODEL_WINDOW, 250)"
    )
    evaluate.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="FILE",
        help="a rule set (JSON list) instead of the defaults",
    )
    evaluate.add_argument("--json", action="store_true", help="the result as JSON")


def add_dlq_parser(commands: argparse._SubParsersAction, var_dir: argparse.ArgumentParser) -> None:
    dlq = commands.add_parser(
        "dlq", parents=[var_dir], help="dead letters: list them, replay them once their cause is fixed"
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    group_help = "only dead letters of this consumer group (e.g. unbind-notification)"

    listing = actions.add_parser(
        "list",
        parents=[var_dir],
        help="every dead letter on the DLQ topic: when, which group, event, error, whether replayed",
    )
    listing.add_argument("--limit", type=_positive_int, default=None, help="only the newest N")
    listing.add_argument("--group", default=None, help=group_help)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = actions.add_parser(
        "replay",
        parents=[var_dir],
        help=(
            "publish dead letters again to their original topic, with their original key, value and ce_* "
            "headers"
        ),
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="ID",
        help="a dead letter's id as `unbind dlq list` shows it (<partition>:<offset>); repeatable",
    )
    which.add_argument("--all", action="store_true", help="every dead letter not replayed yet")
    replay.add_argument("--group", default=None, help=group_help)
    replay.add_argument(
        "--force", action="store_true", help="replay dead letters that were replayed before, too"
    )


def run(args: argparse.Namespace) -> int:
    var_dir = Path(getattr(args, "var_dir", None) or _default_var_dir()).resolve()
    if args.command == "kafka":
        return kafka.cli(args.args, var_dir)
    if args.command == "postgres":
        return postgres.cli(args.args, var_dir)
    if args.command == "docs":
        from tools import docs

        return docs.cli(args.out, args.check)
    if args.command == "risk":
        from tools import risk

        options = {
            name: getattr(args, name)
            for name in ("population", "seed", "attack_share", "patterns", "threshold", "window")
        }
        return risk.evaluate(options, args.rules, args.json)

    # Imported here: they load the services' settings, which `kafka`/`postgres` do not need.
    from tools import services, stack

    if args.command == "migrate":
        server_url = services.database_server_url(args.database_url)
        for result in services.migrate(var_dir, server_url):
            created = " (database created if missing)" if result.created_database else ""
            print(
                f"migrate: {result.service} at head on {services.display_url(result.database_url)}{created}"
            )
    elif args.command == "seed":
        for service, seeded in services.seed(
            var_dir, services.database_server_url(args.database_url)
        ).items():
            print(f"seed: {service}: " + ("demo data added" if seeded else "has data already, left as is"))
    elif args.command == "token":
        from tools import keys

        print(keys.token(var_dir, args.user, args.role or ["customer"], args.ttl, audience=args.audience))
    elif args.command == "login-link":
        return stack.print_login_link(var_dir, args.user, args.port_offset)
    elif args.command == "keys":
        from tools import keys

        return keys.generate_for_deployment(args.out, compose=args.compose)
    elif args.command == "up":
        return stack.up(
            stack.UpOptions(
                var_dir,
                database_url=args.database_url,
                no_kafka=args.no_kafka,
                port_offset=args.port_offset,
                timeout=args.timeout,
                instances=args.instances,
            )
        )
    elif args.command == "down":
        return stack.down(var_dir)
    elif args.command == "device":
        from tools import device

        url = args.url or f"http://127.0.0.1:{8002 + int(os.environ.get('UNBIND_PORT_OFFSET') or 0)}"
        verification = device.sign(
            url, services.token(var_dir, args.user, ["customer"], None), args.verification
        )
        print(
            f"device: biometric passed; verification {verification['id']} is {verification['status']} "
            f"(passed: {', '.join(verification['passed_methods'])})"
        )
    elif args.command == "status":
        return stack.status(var_dir, args.port_offset)
    elif args.command == "chaos":
        from tools import chaos

        if args.flows < 1 or args.concurrency < 1:
            raise InfraError("--flows and --concurrency must be at least 1.")
        options = chaos.ChaosOptions(
            flows=args.flows,
            concurrency=args.concurrency,
            kills_per_service=args.kills_per_service,
            broker_restarts=args.broker_restarts,
            seed=args.seed,
            var_dir=args.chaos_dir,
            database_url=services.database_server_url(args.database_url),
            json_path=args.json,
        )
        return chaos.run(options)
    elif args.command == "bench":
        from tools.bench.run import BenchOptions
        from tools.bench.run import run as run_bench

        if (
            args.workflows < 1
            or args.concurrency < 1
            or not 0 <= args.step_up <= 1
            or (args.rate is not None and args.rate <= 0)
            or (args.skeleton_workflows is not None and args.skeleton_workflows < 1)
        ):
            raise InfraError(
                "--workflows, --skeleton-workflows and --concurrency must be at least 1, --rate positive, "
                "--step-up between 0 and 1."
            )
        return run_bench(
            BenchOptions(
                var_dir,
                args.workflows,
                args.rate,
                args.concurrency,
                args.step_up,
                args.json,
                args.port_offset,
                ceilings=not args.no_ceilings,
                profile=args.profile,
                skeleton=not args.no_skeleton,
                skeleton_workflows=args.skeleton_workflows,
            )
        )
    elif args.command == "demo":
        from tools import demo

        options = demo.DemoOptions(
            var_dir,
            args.step_up,
            args.review,
            args.approve,
            args.repay,
            args.timeout,
            args.port_offset,
            args.pause,
        )
        return demo.run(options)
    elif args.command == "dlq":
        from tools import dlq

        if args.dlq_command == "list":
            return dlq.list_letters(var_dir, args.limit, args.group, args.json)
        return dlq.replay(dlq.ReplayOptions(var_dir, tuple(args.ids or ()), args.all, args.group, args.force))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point (`unbind`). Exit codes: 0 ok, 1 an error explained on stderr, 2 usage."""
    # Line-buffered even when piped (`make up > up.log`), so the output is seen as it happens.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    parser = build_parser()
    # `kafka`/`postgres` pass their arguments through untouched, options like `-h` included,
    # which argparse hands back as "unknown": those go to the sub-command, elsewhere they are errors.
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("kafka", "postgres"):
        args.args = unknown + args.args
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return run(args)
    except InfraError as exc:
        print(f"unbind {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"unbind {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `unbind status | head`: the reader left early, which is no error worth a traceback;
        # stdout goes to /dev/null so flushing it at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
