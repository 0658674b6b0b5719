"""`unbind up|down|status`: the whole local stack — Kafka, migrations, demo data, the four
services, the dashboard and the development lender — started, supervised and stopped from one command.

`unbind up` stays in the foreground as a supervisor. Each service is its own uvicorn process
(`python -m uvicorn --factory services.<name>.main:create_app`) in a process group of its own, so a
Ctrl-C reaches only the supervisor, which then stops the services in order instead of all of them
dying at once. A service that dies is restarted (0.5 s after a crash that follows a stable run,
doubling for a crash loop, capped at 30 s), and a service process also gets SIGTERM from the kernel
if the supervisor itself is killed (PR_SET_PDEATHSIG), so no uvicorn outlives its supervisor.

With `--instances N`, each of the four services runs as N such processes (`binding`, `binding#2`,
...), supervised one by one, sharing one listening socket that the supervisor opens and hands down
(`tools/serve.py`): the kernel gives each connection to whichever instance accepts it first, as a
Kubernetes Service spreads them over pods, and the socket outlives any one instance's restart. The
dashboard and the development lender run once.

Files under the var dir:

    unbind-up.pid        JSON: the supervisor's pid and command line, each service's pid and port
    logs/<service>.log   the service's JSON log lines (stdout and stderr); the previous run's log
                         is kept as logs/<service>.log.1 (a second instance logs to <service>.2.log)

The Kafka broker outlives `unbind up` unless this very invocation started it: a broker that was
already running (from `unbind kafka up`, or an earlier `up` killed hard) is left running on exit.
`unbind down` stops everything this var dir started, the broker and the PostgreSQL cluster included.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from shared.migrations import SERVICES
from tools import dev_lender, kafka, postgres
from tools.errors import InfraError, port_in_use, port_taken_message, process_cmdline, tail
from tools.keys import OPS_SUBJECT, InstallationKeys, installation_keys, login_links_dir, new_login_link
from tools.services import (
    APPS,
    database_server_url,
    display_url,
    load_settings,
    migrate,
    seed,
    settings_class,
)

PID_FILE = "unbind-up.pid"
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a service
POLL_INTERVAL = 0.2
# A service that ran this long before dying counts as stable: its restart is not backed off.
STABLE_AFTER = 10.0
RESTART_FIRST_DELAY = 0.5
RESTART_MAX_DELAY = 30.0
LOG_TAIL_LINES = 30
# The services `--instances` multiplies; the dashboard keeps its view of the whole stream in one process.
SCALED = frozenset(SERVICES)
MAX_INSTANCES = kafka.DEFAULT_PARTITIONS  # more instances than partitions would sit idle in the group
_PR_SET_PDEATHSIG = 1
# Where the stack's broker came from; decides whether stopping the stack stops the broker.
KAFKA_STARTED = "started by this command"
KAFKA_ALREADY_RUNNING = "already running"
KAFKA_EXTERNAL = "external: KAFKA_BOOTSTRAP_SERVERS"
KAFKA_NOT_STARTED = "not started: --no-kafka"


class Shutdown(BaseException):
    """SIGINT or SIGTERM reached the supervisor: unwind to the cleanup that stops the stack.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def say(message: str) -> None:
    """One line of the supervisor's own (human-readable) output, time-stamped."""
    print(f"{datetime.now():%H:%M:%S} unbind: {message}", flush=True)


def factory_path(service: str) -> str:
    """The uvicorn app factory of a service (or of the development lender); also how `down`
    recognises a process of the stack. `service` may name an instance (`binding#2`)."""
    service = service.partition("#")[0]
    return (
        f"{dev_lender.__name__}:create_app"
        if service == dev_lender.NAME
        else f"services.{service}.main:create_app"
    )


def pid_alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def port_offset(explicit: int | None) -> int:
    """`--port-offset`, else `UNBIND_PORT_OFFSET`, else 0: shifts every service port at once."""
    if explicit is not None:
        return explicit
    raw = os.environ.get("UNBIND_PORT_OFFSET", "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise InfraError(f"UNBIND_PORT_OFFSET={raw!r} is not a number.") from None


def service_ports(offset: int) -> dict[str, int]:
    """Each service's port: its settings class's `default_port` plus `offset`."""
    return _checked({service: settings_class(service).default_port + offset for service in APPS}, offset)


def stack_ports(offset: int) -> dict[str, int]:
    """Every port `unbind up` listens on: the services' and the development lender's."""
    return {**service_ports(offset), **_checked({dev_lender.NAME: dev_lender.DEFAULT_PORT + offset}, offset)}


def _checked(ports: dict[str, int], offset: int) -> dict[str, int]:
    bad = {service: port for service, port in ports.items() if not 1024 <= port <= 65535}
    if bad:
        raise InfraError(f"Port offset {offset} puts services outside 1024-65535: {bad}.")
    return ports


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InfraError(f"{name}={raw!r} is not a port number.") from None


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not dlopen after fork
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


# --------------------------------------------------------------------------- one service


@dataclass
class ServiceProcess:
    """One supervised service: how to start it and what became of its last process."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    log_level: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_failures: int = 0
    restart_at: float | None = None
    awaiting_ready: bool = False
    # Another app factory than the service's own (the bench's skeleton of the service).
    factory: str | None = None
    # Which of the service's instances this is, and, when `--instances` runs more than one, the
    # supervisor's listening sockets it inherits: the one all instances share, then its own probe
    # socket, where readiness is asked of this instance and not of whichever accepts first.
    instance: int = 1
    listen_fds: tuple[int, int] | None = None
    probe_port: int | None = None

    @property
    def key(self) -> str:
        """The instance's name in the pid file, the bench's report and the supervisor's output."""
        return self.name if self.instance == 1 else f"{self.name}#{self.instance}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def probe_url(self) -> str:
        """Where this very process answers (its own socket when instances share the port)."""
        return f"http://127.0.0.1:{self.probe_port or self.port}"

    def command(self) -> list[str]:
        if self.listen_fds is not None:
            shared, probe = self.listen_fds
            return [
                sys.executable,
                "-m",
                "tools.serve",
                "--fd",
                str(shared),
                "--fd",
                str(probe),
                "--log-level",
                self.log_level,
                self.factory or factory_path(self.name),
            ]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.factory or factory_path(self.name),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # uvicorn's access and error loggers are routed into the service's JSON log.
            "--log-level",
            self.log_level,
            # Open dashboard pages hold a server-sent event stream; a stop does not wait for them.
            "--timeout-graceful-shutdown",
            "3",
        ]

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                process_group=0,
                preexec_fn=_die_with_parent(),
                pass_fds=self.listen_fds or (),
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return f"--- last lines of {self.log_path} ---\n{tail(self.log_path, LOG_TAIL_LINES)}"


def _ready(client: httpx.Client, service: ServiceProcess) -> bool:
    try:
        return client.get(f"{service.probe_url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


# --------------------------------------------------------------------------- pid file


def pid_file(var_dir: Path) -> Path:
    return var_dir / PID_FILE


def read_pid_file(var_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(pid_file(var_dir).read_text())
    except (OSError, ValueError):
        return None


def _write_pid_file(var_dir: Path, state: dict[str, Any]) -> None:
    path = pid_file(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)  # atomic, so `down` never reads half a file


def live_supervisor(var_dir: Path) -> int | None:
    """Pid of the running `unbind up` of this var dir, if the pid file names a live one."""
    state = read_pid_file(var_dir)
    if not state:
        return None
    supervisor = state.get("supervisor", {})
    pid = supervisor.get("pid")
    # Compare command lines, so a recycled pid is never taken for our supervisor.
    if isinstance(pid, int) and pid_alive(pid) and process_cmdline(pid) == supervisor.get("cmdline"):
        return pid
    return None


def running_kafka_bootstrap(var_dir: Path) -> str | None:
    """The Kafka cluster the running `unbind up` of this var dir uses, if one runs: it may have
    been started with a KAFKA_BOOTSTRAP_SERVERS this shell does not set."""
    if live_supervisor(var_dir) is None:
        return None
    return (read_pid_file(var_dir) or {}).get("kafka_bootstrap") or None


# --------------------------------------------------------------------------- up


@dataclass
class UpOptions:
    var_dir: Path
    database_url: str | None = None
    no_kafka: bool = False
    port_offset: int | None = None
    timeout: float = READY_TIMEOUT
    # Processes per service (the four services; the dashboard and the lender run once).
    instances: int = 1


@dataclass
class _Stack:
    """What one `unbind up` started, for supervision and for the cleanup."""

    var_dir: Path
    services: list[ServiceProcess] = field(default_factory=list)
    kafka_started: bool = False
    kafka_bootstrap: str = ""
    kafka_origin: str = ""
    # The cluster and the passwords of its principals, when this installation knows them.
    kafka_cluster: kafka.Cluster | None = None
    # The PostgreSQL server the services use (None: SQLite files), for the tools that seed data.
    database_server_url: str | None = None
    started_at: float = field(default_factory=time.time)
    # The listening sockets the instances of a service share (--instances > 1), held for restarts.
    listeners: list[socket.socket] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {
            "supervisor": {"pid": os.getpid(), "cmdline": process_cmdline(os.getpid())},
            "var_dir": str(self.var_dir),
            "started_at": self.started_at,
            "kafka_started": self.kafka_started,
            "kafka_bootstrap": self.kafka_bootstrap,
            "database_server_url": self.database_server_url,
            "env": os.environ.get("UNBIND_ENV", ""),
            "services": {
                s.key: {
                    "pid": s.proc.pid if s.proc else None,
                    "port": s.port,
                    "url": s.url,
                    "probe_url": s.probe_url,
                }
                for s in self.services
            },
        }

    def save(self) -> None:
        _write_pid_file(self.var_dir, self.state())


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signum)


def _already_stopping(signum: int, _frame: FrameType | None) -> None:
    # A second Ctrl-C must not interrupt the cleanup half-way; it escalates to SIGKILL by itself.
    say(f"{signal.Signals(signum).name} received; already stopping")


def _set_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def up(options: UpOptions) -> int:
    """Start the stack and supervise it until SIGINT/SIGTERM; returns the exit code."""
    t0 = time.monotonic()
    var_dir = options.var_dir
    if not 1 <= options.instances <= MAX_INSTANCES:
        raise InfraError(
            f"--instances {options.instances}: give 1 to {MAX_INSTANCES} (a consumer group uses at most "
            f"one instance per partition, and the topic has {MAX_INSTANCES})."
        )
    # The stack on a laptop is a development installation (demo data, file sinks) unless the caller says
    # otherwise.
    os.environ.setdefault("UNBIND_ENV", "development")
    if (running := live_supervisor(var_dir)) is not None:
        raise InfraError(
            f"`unbind up` already runs for {var_dir} (pid {running}). See `unbind status`, or stop it with "
            f"`unbind down`."
        )
    ports = stack_ports(port_offset(options.port_offset))
    for service, port in ports.items():
        if port_in_use(port):
            raise InfraError(
                port_taken_message(
                    port,
                    "development lender" if service == dev_lender.NAME else f"{service} service",
                    "run `unbind down` if it is an earlier `unbind up`, or shift every service port with "
                    "`unbind up --port-offset N` (or UNBIND_PORT_OFFSET=N).",
                )
            )
    server_url = database_server_url(options.database_url)
    settings = {service: load_settings(service, var_dir, server_url) for service in APPS}
    first = settings[SERVICES[0]]
    stack = _Stack(var_dir, database_server_url=server_url)
    _set_signal_handlers(_raise_shutdown)
    try:
        stack.save()
        timings = _start(stack, options, ports, settings, server_url=server_url, t0=t0)
        _print_summary(stack, settings, server_url, first.topic, dlq_topic=first.dlq_topic, timings=timings)
        _supervise(stack)
    except Shutdown as stop:
        say(f"{stop} received: stopping")
    finally:
        _set_signal_handlers(_already_stopping)
        _stop(stack)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0


def _start(
    stack: _Stack,
    options: UpOptions,
    ports: dict[str, int],
    settings: dict[str, Any],
    *,
    server_url: str | None,
    t0: float,
) -> dict[str, float]:
    """Kafka, databases, migrations, seed, services, readiness; returns the phase durations."""
    first = settings[SERVICES[0]]
    timings: dict[str, float] = {}
    if options.no_kafka:
        stack.kafka_bootstrap = first.kafka_bootstrap_servers
        stack.kafka_cluster = kafka.local_cluster(stack.var_dir, stack.kafka_bootstrap)
        stack.kafka_origin = KAFKA_NOT_STARTED
        say(f"kafka: not started (--no-kafka); services will use {stack.kafka_bootstrap}")
    else:
        before = kafka.kafka_status(stack.var_dir)
        say(
            "kafka: starting the broker"
            if not before["running"] and not before["external"]
            else f"kafka: using {before['bootstrap']}"
        )
        stack.kafka_cluster = kafka.kafka_up(
            stack.var_dir,
            port=_env_port("KAFKA_PORT", kafka.DEFAULT_PORT),
            controller_port=_env_port("KAFKA_CONTROLLER_PORT", kafka.DEFAULT_CONTROLLER_PORT),
            topics=kafka.EventTopics(first.topic, first.dlq_topic),
        )
        stack.kafka_bootstrap = stack.kafka_cluster.bootstrap
        stack.kafka_started = not before["external"] and not before["running"]
        stack.kafka_origin = (
            KAFKA_EXTERNAL
            if before["external"]
            else KAFKA_STARTED
            if stack.kafka_started
            else KAFKA_ALREADY_RUNNING
        )
        stack.save()
    timings["kafka"] = time.monotonic() - t0

    phase = time.monotonic()
    for result in migrate(stack.var_dir, server_url):
        created = " (database created if missing)" if result.created_database else ""
        say(f"migrate: {result.service} at head on {display_url(result.database_url)}{created}")
    for service, seeded in seed(stack.var_dir, server_url).items():
        say(f"seed: {service}: " + ("demo data added" if seeded else "has data already, left as is"))
    timings["databases"] = time.monotonic() - phase

    phase = time.monotonic()
    keys = installation_keys(stack.var_dir)
    if created := keys.generate_missing():
        say(
            f"keys: generated {', '.join(created)} in {_relative(keys.dir)} (this installation's own; mode "
            f"0600)"
        )
    logs = stack.var_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for service in (*APPS, dev_lender.NAME):
        for log_path in (logs / f"{service}.log", *logs.glob(f"{service}.[0-9]*.log")):
            if log_path.exists():
                log_path.replace(log_path.with_name(f"{log_path.name}.1"))
    for service in APPS:
        env = service_env(
            stack.var_dir,
            ports,
            service,
            kafka_bootstrap=stack.kafka_bootstrap,
            kafka_cluster=stack.kafka_cluster,
            server_url=server_url,
            keys=keys,
        )
        instances = options.instances if service in SCALED else 1
        if instances > 1 and "UNBIND_DATABASE_POOL_SIZE" not in os.environ:
            # The instances together keep as many connections as one instance would.
            env["UNBIND_DATABASE_POOL_SIZE"] = str(max(4, settings[service].database_pool_size // instances))
        shared = _listener(stack, ports[service]) if instances > 1 else None
        for instance in range(1, instances + 1):
            log_name = service if instance == 1 else f"{service}.{instance}"
            process = ServiceProcess(
                service, ports[service], env, logs / f"{log_name}.log", settings[service].log_level.lower()
            )
            if shared is not None:
                probe = _listener(stack, 0)
                process.instance = instance
                process.listen_fds = (shared.fileno(), probe.fileno())
                process.probe_port = probe.getsockname()[1]
            stack.services.append(process)
    stack.services.append(_lender_process(stack, ports, keys, first.log_level.lower()))
    for proc in stack.services:
        proc.spawn()
    stack.save()
    say(
        "services: starting "
        + ", ".join(f"{s.key} (pid {s.proc.pid if s.proc else '?'})" for s in stack.services)
    )
    wait_ready(stack.services, options.timeout)
    timings["services"] = time.monotonic() - phase
    timings["total"] = time.monotonic() - t0
    return timings


def _listener(stack: _Stack, port: int) -> socket.socket:
    """A listening socket on `port` (0: any free one) that the instances inherit and the supervisor
    keeps open across their restarts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(2048)
    listener.set_inheritable(True)
    stack.listeners.append(listener)
    return listener


def service_env(
    var_dir: Path,
    ports: dict[str, int],
    service: str,
    *,
    kafka_bootstrap: str,
    kafka_cluster: kafka.Cluster | None,
    server_url: str | None,
    keys: InstallationKeys,
) -> dict[str, str]:
    """The environment of one service process of the stack on `ports`: the caller's, plus where the
    stack lives, the service's own Kafka principal (when the stack's broker is one whose passwords
    it knows), and its own keys and secrets, no other's."""
    env = dict(os.environ)
    env.update(
        {
            "UNBIND_VAR_DIR": str(var_dir),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            # Verification's one synchronous call goes to this stack's notification service.
            "UNBIND_NOTIFICATION_URL": f"http://127.0.0.1:{ports['notification']}",
            # The dashboard's review queue and decisions go to this stack's risk service, its case and
            # support views to binding, verification and notification too.
            "UNBIND_RISK_URL": f"http://127.0.0.1:{ports['risk']}",
            "UNBIND_BINDING_URL": f"http://127.0.0.1:{ports['binding']}",
            "UNBIND_VERIFICATION_URL": f"http://127.0.0.1:{ports['verification']}",
            # The lender webhook (mandates to confirm, unbinds) goes to the development lender, unless one is
            # named.
            "UNBIND_INSTITUTION_WEBHOOK_URL": os.environ.get("UNBIND_INSTITUTION_WEBHOOK_URL")
            or f"http://127.0.0.1:{ports[dev_lender.NAME]}/webhook",
            # Log lines reach the log file as they are written, not when a buffer fills.
            "PYTHONUNBUFFERED": "1",
        }
    )
    if server_url:
        env["UNBIND_DATABASE_SERVER_URL"] = server_url
    if kafka_cluster is not None:
        env.update(kafka_cluster.service_env(service))
    env.update(keys.service_env(service))
    if service == "dashboard":
        env["UNBIND_LOGIN_LINK_DIR"] = str(login_links_dir(var_dir))
    return env


def _lender_process(
    stack: _Stack, ports: dict[str, int], keys: InstallationKeys, log_level: str
) -> ServiceProcess:
    """The development lender: notification's lender webhook goes to it, its callbacks to binding."""
    env = {
        **os.environ,
        "UNBIND_VAR_DIR": str(stack.var_dir),
        "UNBIND_DEV_LENDER_BINDING_URL": f"http://127.0.0.1:{ports['binding']}",
        "PYTHONUNBUFFERED": "1",
        **dev_lender.secrets_env(keys),
    }
    return ServiceProcess(
        dev_lender.NAME,
        ports[dev_lender.NAME],
        env,
        stack.var_dir / "logs" / f"{dev_lender.NAME}.log",
        log_level,
    )


def wait_ready(services: list[ServiceProcess], timeout: float) -> None:
    """Block until every service answers GET /readyz with 200; fail fast if one exits."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    with httpx.Client(trust_env=False) as client:
        while pending:
            for service in list(pending):
                if service.proc is not None and service.proc.poll() is not None:
                    raise InfraError(
                        f"The {service.key} service exited during startup "
                        f"({_describe_exit(service.proc.returncode)}).\n{service.log_tail()}"
                    )
                if _ready(client, service):
                    pending.remove(service)
            if not pending:
                return
            if time.monotonic() >= deadline:
                tails = "\n".join(service.log_tail() for service in pending)
                names = ", ".join(f"{s.key} ({s.url}/readyz)" for s in pending)
                raise InfraError(f"Not ready within {timeout:.0f} s: {names}.\n{tails}")
            time.sleep(0.1)


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _self_command() -> str:
    """How the user invoked `unbind`, so the printed hints can be pasted as they are."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "unbind" and argv0.parent != Path():
        return _relative(argv0.resolve()) if argv0.is_absolute() else str(argv0)
    return "unbind"


def _database_label(url: str) -> str:
    """A SQLite database as its file (relative to the cwd), any other as its password-less URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return _relative(Path(parsed.database).resolve())
    return display_url(url)


def _print_summary(
    stack: _Stack,
    settings: dict[str, Any],
    server_url: str | None,
    topic: str,
    *,
    dlq_topic: str,
    timings: dict[str, float],
) -> None:
    me = _self_command()
    default_var = Path(os.environ.get("UNBIND_VAR_DIR") or "var").resolve()
    # Tokens, links and the stop are this var dir's: name it unless it is the default.
    me = me if stack.var_dir == default_var else f"{me} --var-dir {_relative(stack.var_dir)}"
    stop_command = f"{me} down"
    width = max(len(s.key) for s in stack.services)
    services = {s.name for s in stack.services if s.name != dev_lender.NAME}
    instances = len([s for s in stack.services if s.name == SERVICES[0]])
    lines = [
        "",
        (
            f"unbind is up: all {len(services)} services"
            + (f" ({instances} instances of each of the four)" if instances > 1 else "")
            + f" and the development lender ready in {timings['total']:.1f} s"
        ),
        "",
    ]
    for s in stack.services:
        lines.append(
            f"  {s.key:<{width}}  {s.url:<22}  docs {s.url}/docs   pid {s.proc.pid if s.proc else '-'}   "
            f"log {_relative(s.log_path)}"
        )
    lines += ["", f"  kafka      {stack.kafka_bootstrap} ({stack.kafka_origin}); topics {topic}, {dlq_topic}"]
    lines.append(
        "  databases  "
        + (
            "PostgreSQL " + display_url(server_url) + ", one database per service:"
            if server_url
            else "SQLite, one file per service:"
        )
    )
    for service in SERVICES:
        lines.append(f"               {service:<{width}}  {_database_label(settings[service].database_url)}")
    dashboard = next(s.url for s in stack.services if s.name == "dashboard")
    lender_delay = os.environ.get("UNBIND_DEV_LENDER_DELAY_SECONDS") or dev_lender.DEFAULT_DELAY_SECONDS
    link = new_login_link(stack.var_dir, dashboard, subject=OPS_SUBJECT)
    lines += [
        (
            f"  SMS sink   {_relative(settings['notification'].sms_sink.resolve())} (one JSON line per SMS: "
            f"the one-time codes)"
        ),
        (
            f"  lender     the development lender confirms each mandate after {lender_delay} s "
            f"(UNBIND_DEV_LENDER_DELAY_SECONDS),"
        ),
        (
            f"             refuses accounts ending {dev_lender.REFUSED_LAST4}; what it got and answered: "
            f"{_relative(stack.var_dir / dev_lender.JOURNAL)}"
        ),
        f"  dashboard  {link}",
        f"             (sign-in link: works once, within 10 minutes; another: {me} login-link)",
        (
            f"  keys       {_relative(installation_keys(stack.var_dir).dir)} (generated for this "
            f"installation; tokens are signed with them)"
        ),
        f"  tokens     {me} token --user u-zhangsan    (customer; also u-lisi)",
        f"             {me} token --role ops           (subject ops-admin)",
        f"  stop       Ctrl-C here, or `{stop_command}` from another terminal",
        "",
        (
            f"  timings    kafka {timings['kafka']:.1f} s, migrate+seed {timings['databases']:.1f} s, "
            f"services {timings['services']:.1f} s"
        ),
        "",
    ]
    print("\n".join(lines), flush=True)


def restart_delay(quick_failures: int) -> float:
    """Seconds before restarting a dead service that had died `quick_failures` times in a row
    within STABLE_AFTER of its start: 0.5 s after a stable run, then 1, 2, 4 ... capped at 30 s,
    so a service that cannot start does not spin the machine while one that crashed once is back
    almost at once."""
    return min(RESTART_MAX_DELAY, RESTART_FIRST_DELAY * 2**quick_failures)


def _supervise(stack: _Stack) -> None:
    """Restart services that die, with a capped backoff, until a signal raises Shutdown."""
    with httpx.Client(trust_env=False) as client:
        while True:
            now = time.monotonic()
            for service in stack.services:
                if service.proc is not None and service.proc.poll() is not None:
                    ran = now - service.started_at
                    service.quick_failures = 0 if ran >= STABLE_AFTER else service.quick_failures + 1
                    delay = restart_delay(service.quick_failures)
                    say(
                        f"{service.key} (pid {service.proc.pid}) exited with "
                        f"{_describe_exit(service.proc.returncode)} after {ran:.1f} s; restarting in "
                        f"{delay:.1f} s"
                    )
                    service.proc = None
                    service.restart_at = now + delay
                if service.proc is None and service.restart_at is not None and now >= service.restart_at:
                    # A shared socket is the supervisor's own: the port is in use by design.
                    if service.listen_fds is None and port_in_use(service.port):
                        say(
                            port_taken_message(
                                service.port, f"{service.name} service", "the restart is retried in 5 s."
                            )
                        )
                        service.restart_at = now + 5.0
                        continue
                    service.spawn()
                    service.restarts += 1
                    service.awaiting_ready = True
                    stack.save()
                    say(
                        f"{service.key} restarted (pid {service.proc.pid if service.proc else '?'}, restart "
                        f"#{service.restarts}); log {_relative(service.log_path)}"
                    )
                if service.awaiting_ready and service.alive() and _ready(client, service):
                    service.awaiting_ready = False
                    say(f"{service.key} is ready again at {service.url}")
            time.sleep(POLL_INTERVAL)


def terminate(pids: dict[str, int], grace: float = STOP_GRACE) -> None:
    """SIGTERM each pid, wait up to `grace` seconds, then SIGKILL what is left."""
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(pid_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in pids.items():
        if pid_alive(pid):
            say(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _stop(stack: _Stack) -> None:
    """Stop the services (and the broker if this `up` started it); remove the pid file."""
    running = {s.key: s.proc.pid for s in stack.services if s.proc is not None and s.alive()}
    if running:
        say("stopping " + ", ".join(f"{name} (pid {pid})" for name, pid in running.items()))
        terminate(running)
        for service in stack.services:
            if service.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.proc.wait(timeout=5)
    for listener in stack.listeners:
        listener.close()
    if stack.kafka_started:
        say("kafka: stopping the broker this `unbind up` started")
        try:
            kafka.kafka_down(stack.var_dir)
        except InfraError as exc:
            say(f"kafka: could not stop the broker: {exc}")
    elif stack.kafka_origin == KAFKA_ALREADY_RUNNING:
        say(
            f"kafka: left running at {stack.kafka_bootstrap}: it ran before this `unbind up` (`unbind down` "
            f"stops it)"
        )
    elif stack.kafka_origin == KAFKA_EXTERNAL:
        say(f"kafka: the external cluster {stack.kafka_bootstrap} is left alone")
    with contextlib.suppress(FileNotFoundError):
        pid_file(stack.var_dir).unlink()
    say("stopped")


# --------------------------------------------------------------------------- down / status


def down(var_dir: Path) -> int:
    """Stop the supervisor of this var dir, any service it left behind, the broker and PostgreSQL."""
    state = read_pid_file(var_dir) or {}
    supervisor = live_supervisor(var_dir)
    if supervisor is not None:
        print(f"up: stopping the supervisor (pid {supervisor})", flush=True)
        os.kill(supervisor, signal.SIGTERM)
        # It stops its services (up to STOP_GRACE) and possibly the broker (kafka_down: up to 30 s).
        deadline = time.monotonic() + STOP_GRACE + 45
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(supervisor):
            print(f"up: the supervisor (pid {supervisor}) did not stop; SIGKILL", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
        else:
            print("up: stopped", flush=True)
    elif state:
        print("up: no supervisor running (stale pid file)", flush=True)
    else:
        print("up: not running", flush=True)
    leftovers = {
        name: info["pid"]
        for name, info in (state.get("services") or {}).items()
        if isinstance(info.get("pid"), int)
        and pid_alive(info["pid"])
        and factory_path(name) in process_cmdline(info["pid"])
    }
    if leftovers:
        print(
            "up: stopping leftover services "
            + ", ".join(f"{name} (pid {pid})" for name, pid in leftovers.items()),
            flush=True,
        )
        terminate(leftovers)
    with contextlib.suppress(FileNotFoundError):
        pid_file(var_dir).unlink()
    code = 0
    for cli in (kafka.cli, postgres.cli):
        code = max(code, cli(["down"], var_dir))
    return code


def status(var_dir: Path, offset: int | None) -> int:
    """Print what runs: the supervisor, each service's readiness, Kafka and PostgreSQL."""
    state = read_pid_file(var_dir) or {}
    supervisor = live_supervisor(var_dir)
    if supervisor is not None:
        started = datetime.fromtimestamp(state.get("started_at", 0)).strftime("%Y-%m-%d %H:%M:%S")
        print(f"up: running (supervisor pid {supervisor}, since {started})")
    else:
        print("up: not running" + (" (stale pid file)" if state else ""))
    recorded = state.get("services") or {}
    # Each instance is asked through its own probe URL; the URL shown is the one clients use.
    if supervisor is not None and recorded:
        urls = {name: (info["url"], info.get("probe_url") or info["url"]) for name, info in recorded.items()}
    else:
        urls = {
            name: (f"http://127.0.0.1:{port}",) * 2 for name, port in stack_ports(port_offset(offset)).items()
        }
    width = max(len(name) for name in urls)
    with httpx.Client(trust_env=False) as client:
        for name, (url, probe_url) in urls.items():
            try:
                response = client.get(f"{probe_url}/readyz", timeout=2.0)
                body = (
                    response.json()
                    if response.headers.get("content-type", "").startswith("application/json")
                    else {}
                )
                if response.status_code == 200 and name == dev_lender.NAME:
                    verdict = "ready"
                elif response.status_code == 200:
                    # The services report their relay; the dashboard, which publishes nothing, its reader.
                    kafka_state = (
                        "connected"
                        if body.get("relay_connected") or body.get("consumer_connected")
                        else "not connected yet"
                    )
                    verdict = f"ready (kafka {kafka_state})"
                else:
                    verdict = f"NOT ready ({response.status_code}: {body.get('detail', response.text[:100])})"
            except httpx.HTTPError:
                verdict = "not answering"
            pid = (recorded.get(name) or {}).get("pid") if supervisor is not None else None
            print(f"{name:<{width}}  {url:<22}  {verdict}" + (f"  pid {pid}" if pid else ""))
    used = state.get("kafka_bootstrap") if supervisor is not None else None
    if used and used != kafka.kafka_status(var_dir)["bootstrap"]:
        # The stack runs on a cluster this shell may not name (KAFKA_BOOTSTRAP_SERVERS of `up`).
        print(
            f"kafka: the services use {used}, which is "
            + ("reachable" if _reachable(used) else "NOT reachable")
        )
    else:
        kafka.cli(["status"], var_dir)
    postgres.cli(["status"], var_dir)
    return 0


def _reachable(bootstrap: str) -> bool:
    """True if the first host:port of a bootstrap list accepts TCP connections."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False


def print_login_link(var_dir: Path, user: str | None, offset: int | None) -> int:
    """`unbind login-link`: a new one-time sign-in link to this var dir's dashboard."""
    state = read_pid_file(var_dir) if live_supervisor(var_dir) is not None else None
    recorded = ((state or {}).get("services") or {}).get("dashboard") or {}
    url = recorded.get("url") or f"http://127.0.0.1:{service_ports(port_offset(offset))['dashboard']}"
    print(new_login_link(var_dir, url, subject=user or OPS_SUBJECT))
    print("(works once, within 10 minutes)", file=sys.stderr)
    return 0
