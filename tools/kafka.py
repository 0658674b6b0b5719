"""A local single-node Kafka broker (KRaft) for development and tests.

The broker is Apache Kafka's own ``kafka.Kafka`` main class, run from jars that
Maven resolves from Maven Central (deploy/kafka/pom.xml) into a per-user cache,
``$UNBIND_CACHE_DIR/kafka-<version>/libs`` (default ``~/.cache/unbind``), so a
fresh clone reuses jars downloaded before and no Kafka tarball is needed.

Everything a broker owns lives under ``<var>/kafka``::

    server.properties   rendered from deploy/kafka/server.properties.template (mode 0600: it
                        holds the admin's and the controller's passwords)
    credentials.json    every principal's password, made once (mode 0600; see kafka_access)
    cluster.id          generated once, used to format the storage once
    kafka.pid           pid of the broker *we* started (never any other)
    broker.json         ports the running broker was started with
    data/               log.dirs (KRaft metadata and topic data)
    logs/server.log     log4j output; logs/kafka.out: the JVM's stdout/stderr

The broker authenticates every client (SASL/SCRAM-SHA-512 on its loopback listener) and
authorizes with ACLs: the storage is formatted with every principal's SCRAM credentials, and
``kafka_up`` grants the services their ACLs on the topics (tools/kafka_access.py).

If ``KAFKA_BOOTSTRAP_SERVERS`` is set, no broker is started: ``kafka_up`` only
waits for that cluster and creates the topics on it (its users and ACLs are its operators').

All topics, the dead-letter topic included, get 6 partitions: the DLQ then keeps
the same key -> partition mapping as ``unbind.events``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tools.errors import InfraError, port_in_use, port_taken_message, tail
from tools.kafka_access import (
    ADMIN,
    CONTROLLER,
    Cluster,
    EventTopics,
    create_credentials,
    external_cluster,
    grant_service_acls,
    principals,
    read_credentials,
    revoke_topic_acls,
    service_principals,
)

KAFKA_VERSION: str = "4.4.0"  # keep equal to <kafka.version> in deploy/kafka/pom.xml
DEFAULT_TOPICS = EventTopics()
DEFAULT_PARTITIONS = 6
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
MIN_JAVA = 17  # Kafka 4.x brokers are compiled for Java 17 (class file version 61)
# Bounded heap, like KAFKA_HEAP_OPTS in Kafka's scripts; a dev broker needs little.
DEFAULT_HEAP_OPTS = "-Xmx512m -Xms256m"
LOG_TAIL_LINES = 30

_T = TypeVar("_T")


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class _Paths:
    """Where one var dir keeps its broker's files."""

    root: Path

    @classmethod
    def of(cls, var_dir: Path) -> _Paths:
        return cls(Path(var_dir).resolve() / "kafka")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "kafka.out"

    @property
    def props(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "broker.json"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"


def default_cache_dir() -> Path:
    """``$UNBIND_CACHE_DIR``, else ``~/.cache/unbind``: outside the repo so clones share it."""
    env = os.environ.get("UNBIND_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unbind"


def deploy_dir() -> Path:
    """The repository's ``deploy/kafka`` folder (pom, config template, log4j config).

    Looked up from ``$UNBIND_DEPLOY_DIR``, then upwards from this file (source
    checkout or editable install), then upwards from the current directory (a
    non-editable install run from the repo root).
    """
    env = os.environ.get("UNBIND_DEPLOY_DIR")
    candidates: list[Path] = [Path(env)] if env else []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        candidates += [p / "deploy" / "kafka" for p in (start, *start.parents)]
    for cand in candidates:
        if (cand / "pom.xml").is_file():
            return cand
    raise InfraError(
        "Cannot find deploy/kafka/pom.xml (the Kafka runtime definition). Run from the repository checkout, "
        "or set UNBIND_DEPLOY_DIR=<repo>/deploy/kafka."
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so parallel test workers do not download or start twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- java


def _jvm_suggestions() -> str:
    """JDKs installed in the usual Debian place, to name in error messages."""
    found = sorted(str(p.parent.parent) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    return f" Installed JDKs: {', '.join(found)}." if found else ""


def java_major_version(java: str) -> int:
    """Major version of a ``java`` binary (8 for "1.8.0_x", 17 for "17.0.15")."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"Could not run `{java} -version`: {exc}.{_jvm_suggestions()}") from exc
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if out.returncode != 0 or not match:
        raise InfraError(
            f"`{java} -version` did not report a version (exit {out.returncode}): {text.strip()[-500:]}"
        )
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """Path of a Java >= 17 binary: ``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else PATH."""
    how_to_fix = (
        f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer. Install one (Debian: `apt-get install -y "
        f"openjdk-17-jre-headless`) or point JAVA_HOME at it."
    )
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = str(Path(java_home) / "bin" / "java")
        # A broken JAVA_HOME also breaks Maven, so say so rather than silently using PATH.
        if not os.access(java, os.X_OK):
            raise InfraError(
                f"JAVA_HOME={java_home} has no executable bin/java. {how_to_fix} Or unset JAVA_HOME to use "
                f"`java` from PATH.{_jvm_suggestions()}"
            )
    else:
        found = shutil.which("java")
        if not found:
            raise InfraError(f"Java was not found on PATH. {how_to_fix}{_jvm_suggestions()}")
        java = found
    major = java_major_version(java)
    if major < MIN_JAVA:
        raise InfraError(f"{java} is Java {major}, too old. {how_to_fix}{_jvm_suggestions()}")
    return java


# --------------------------------------------------------------------------- jars


def _libs_dir(cache_dir: Path | None) -> Path:
    return (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Return the folder holding the broker's runtime jars, running Maven only when missing.

    ``cache_dir`` is the cache root (default ``$UNBIND_CACHE_DIR`` or ``~/.cache/unbind``).
    Maven copies into ``libs.partial`` which is renamed to ``libs`` with a ``.complete``
    marker only after success, so an interrupted download is never mistaken for a good one.
    """
    libs = _libs_dir(cache_dir)
    marker = libs / ".complete"
    if marker.is_file():
        return libs
    base = libs.parent
    with _file_lock(base / ".lock"):
        if marker.is_file():  # another process finished while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise InfraError(
                "Maven (`mvn`) was not found on PATH; it is needed once to download the "
                f"Kafka {KAFKA_VERSION} jars into {libs}. Install it (Debian: "
                "`apt-get install -y maven`), or copy the jars of a Kafka "
                f"{KAFKA_VERSION} distribution into {libs} and create {marker}."
            )
        find_java()  # Maven needs a JDK too; fail with the clearer Java message first
        pom = deploy_dir() / "pom.xml"
        partial = base / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        maven_log = base / "maven.log"
        cmd = [
            mvn,
            "-B",
            "--no-transfer-progress",
            "-f",
            str(pom),
            "package",
            f"-Dkafka.version={KAFKA_VERSION}",
            f"-Dunbind.libs.dir={partial}",
            f"-Dunbind.build.dir={base / 'maven-build'}",
        ]
        with open(maven_log, "wb") as log:
            try:
                result = subprocess.run(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=base,
                    timeout=900,
                    check=False,
                )
                code: int | str = result.returncode
            except subprocess.TimeoutExpired:
                code = "timeout after 900 s"
        jar = partial / f"kafka_2.13-{KAFKA_VERSION}.jar"
        if code != 0 or not jar.is_file():
            output = tail(maven_log, LOG_TAIL_LINES)
            offline = re.search(
                r"Could not (transfer|resolve)|UnknownHost|Connection refused|timed out|"
                r"Network is unreachable|offline",
                output,
            )
            reason = (
                "Maven could not reach Maven Central (no network or a blocking proxy/mirror in "
                "~/.m2/settings.xml)"
                if offline
                else "Maven failed"
            )
            raise InfraError(
                f"{reason} while fetching Kafka {KAFKA_VERSION} jars (exit {code}). Command: "
                f"{shlex.join(cmd)}\nFull log: {maven_log}\nLast lines of Maven output:\n{output}"
            )
        (partial / ".complete").write_text(f"kafka {KAFKA_VERSION}\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        shutil.rmtree(base / "maven-build", ignore_errors=True)
    return libs


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the ")" closing the command name.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_our_broker(pid: int, paths: _Paths) -> bool:
    """True if ``pid`` is a live java kafka.Kafka process using *this* var dir's config."""
    if not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return (
        bool(args)
        and os.path.basename(args[0]).startswith("java")
        and "kafka.Kafka" in args
        and str(paths.props) in args
    )


def _read_pid(paths: _Paths) -> int | None:
    try:
        return int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _our_live_pid(paths: _Paths) -> int | None:
    """Pid of the broker this var dir started, if it still runs; clears a stale pid file."""
    pid = _read_pid(paths)
    if pid is None:
        return None
    if _is_our_broker(pid, paths):
        return pid
    # The pid died or was reused by an unrelated process: forget it, never signal it.
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file.unlink()
    return None


def _read_state(paths: _Paths) -> dict:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}


def _broker_log_tail(paths: _Paths) -> str:
    return (
        f"--- last lines of {paths.server_log} ---\n{tail(paths.server_log, LOG_TAIL_LINES)}\n"
        f"--- last lines of {paths.stdout_log} ---\n{tail(paths.stdout_log, LOG_TAIL_LINES)}\n"
        f"If the stored data is the problem (e.g. 'node id' / 'cluster id' mismatch), run "
        f"`unbind kafka down` and delete {paths.root} to start from an empty broker."
    )


def _new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as Kafka's Uuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids these: they look like CLI options
            return cid


def _render_config(paths: _Paths, port: int, controller_port: int, passwords: dict[str, str]) -> None:
    template = (deploy_dir() / "server.properties.template").read_text()
    rendered = string.Template(template).substitute(
        port=port,
        controller_port=controller_port,
        data_dir=paths.data,
        admin_password=passwords[ADMIN],
        controller_password=passwords[CONTROLLER],
    )
    # Only the owner reads it: it holds two passwords. Rewritten in place, the mode is set anew.
    with os.fdopen(os.open(paths.props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(rendered)


def _credentials(paths: _Paths) -> dict[str, str]:
    """Every principal's password, made on first use. Storage formatted without them (a var dir
    from before the broker authenticated clients, or one that lacks a newer principal) is deleted:
    its users are fixed when it is formatted, and it holds development data only. Call with the
    broker stopped."""
    passwords = read_credentials(paths.credentials)
    if passwords.keys() >= set(principals()):
        return passwords
    if paths.data.is_dir():
        print(
            f"kafka: {paths.data} was formatted without SASL users for every principal; recreating it (it "
            f"held development data only)",
            file=sys.stderr,
        )
        shutil.rmtree(paths.data)
    return create_credentials(paths.credentials)


def _jvm_logging_args(paths: _Paths) -> list[str]:
    return [
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
    ]


def _format_storage(java: str, libs: Path, paths: _Paths, passwords: dict[str, str]) -> None:
    """Format log.dirs once (a KRaft broker refuses to start on unformatted storage), with the
    SCRAM credentials of the admin and of every service (KIP-900: they exist before the first
    client connects, so no client ever needs an unauthenticated door to create them)."""
    if (paths.data / "meta.properties").is_file():
        return
    if not paths.cluster_id_file.is_file():
        paths.cluster_id_file.write_text(_new_cluster_id() + "\n")
    cluster_id = paths.cluster_id_file.read_text().strip()
    cmd = [
        java,
        "-Xmx256m",
        *_jvm_logging_args(paths),
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(paths.props),
    ]
    # KIP-900 takes them on the command line only: visible in /proc for the seconds the format runs, once per
    # var dir.
    scram = [
        arg
        for name in (ADMIN, *service_principals())
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={passwords[name]}]")
    ]
    out = subprocess.run(
        cmd + scram, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    if out.returncode != 0:
        # The command without its --add-scram arguments: they hold the passwords.
        raise InfraError(
            f"Formatting Kafka storage in {paths.data} failed (exit {out.returncode}).\n"
            f"Command: {shlex.join(cmd)} --add-scram ...\n{(out.stdout + out.stderr).strip()[-3000:]}\n"
            f"If {paths.data} holds an old or broken broker, `unbind kafka down` and delete "
            f"{paths.root} to start from scratch."
        )


# The broker is started through a short-lived Python launcher so that it is not
# our child: when it exits, init reaps it instead of it lingering as a zombie of a
# long-running test process (and Popen warnings about running children vanish).
_LAUNCHER = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,\n"
    "                     stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
)


def _spawn_broker(java: str, libs: Path, paths: _Paths) -> int:
    heap = shlex.split(os.environ.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS)
    cmd = [
        java,
        *heap,
        "-server",
        # Kafka's own defaults from kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS).
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        *_jvm_logging_args(paths),
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(paths.props),
    ]
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(paths.stdout_log), *cmd],
        capture_output=True,
        text=True,
        cwd=paths.root,
        timeout=60,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        raise InfraError(f"Could not start the Kafka broker: {out.stderr.strip()[-2000:]}")
    return int(out.stdout.strip())


@dataclass
class _Started:
    pid: int
    cluster: Cluster


def _start_or_reuse(var_dir: Path, port: int, controller_port: int) -> _Started:
    """Blocking part of ``kafka_up``: reuse our live broker or prepare and spawn one."""
    paths = _Paths.of(var_dir)
    paths.logs.mkdir(parents=True, exist_ok=True)
    with _file_lock(paths.lock_file):
        pid = _our_live_pid(paths)
        if pid is not None and not read_credentials(paths.credentials).keys() >= set(principals()):
            # A broker started before clients authenticated: stopped, and its storage recreated below.
            _stop(pid, timeout=30)
            pid = None
        if pid is not None:
            state = _read_state(paths)
            running = (state.get("port"), state.get("controller_port"))
            if running != (port, controller_port):
                raise InfraError(
                    f"The broker of {var_dir} (pid {pid}) already runs with ports "
                    f"{running[0]}/{running[1]}, not {port}/{controller_port}. Use "
                    f"127.0.0.1:{running[0]}, or `unbind kafka down` first."
                )
            return _Started(pid, Cluster.local(f"127.0.0.1:{port}", read_credentials(paths.credentials)))
        if port == controller_port:
            raise InfraError(f"Kafka port and controller port must differ (both {port}).")
        java = find_java()
        hint = "set KAFKA_BOOTSTRAP_SERVERS to use a broker that is already running."
        if port_in_use(port):
            raise InfraError(port_taken_message(port, "Kafka", f"choose another KAFKA_PORT, or {hint}"))
        if port_in_use(controller_port):
            raise InfraError(
                port_taken_message(controller_port, "Kafka controller", "choose another controller port.")
            )
        libs = ensure_jars()
        passwords = _credentials(paths)
        _render_config(paths, port, controller_port, passwords)
        _format_storage(java, libs, paths, passwords)
        pid = _spawn_broker(java, libs, paths)
        paths.pid_file.write_text(f"{pid}\n")
        paths.state_file.write_text(
            json.dumps(
                {
                    "pid": pid,
                    "port": port,
                    "controller_port": controller_port,
                    "version": KAFKA_VERSION,
                    "started_at": time.time(),
                }
            )
        )
        return _Started(pid, Cluster.local(f"127.0.0.1:{port}", passwords))


# --------------------------------------------------------------------------- kafka protocol


def _admin(cluster: Cluster, request_timeout_ms: int = 10000):  # -> AIOKafkaAdminClient
    from aiokafka.admin import AIOKafkaAdminClient  # imported lazily: `status` needs no aiokafka

    return AIOKafkaAdminClient(
        **cluster.client_options(), client_id="unbind-infra", request_timeout_ms=request_timeout_ms
    )


async def _refusal(cluster: Cluster) -> str | None:
    """Why the broker refuses the cluster's credentials (retrying will not help), or None.

    aiokafka's clients log a refused handshake and raise only "unable to bootstrap"; one
    connection of our own gets the broker's reason.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import AuthenticationFailedError, KafkaError, SaslAuthenticationFailed

    host, _, port = cluster.bootstrap.split(",")[0].strip().rpartition(":")
    options = cluster.client_options()
    options.pop("bootstrap_servers")
    try:
        conn = await create_conn(
            host.strip("[]") or "127.0.0.1", int(port), request_timeout_ms=5000, **options
        )
    except (AuthenticationFailedError, SaslAuthenticationFailed) as exc:
        return str(exc)
    except (OSError, KafkaError, TimeoutError, ValueError):
        return None
    conn.close()
    return None


async def _wait_for_metadata(
    cluster: Cluster,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    on_death: Callable[[], str] | None = None,
) -> None:
    """Retry a metadata request until it succeeds; fail fast if the broker process died or
    refuses the credentials."""
    bootstrap = cluster.bootstrap
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    # Without a process of ours (external cluster), point at the setting that chose it.
    explain: Callable[[], str] = on_death or (
        lambda: f"Check KAFKA_BOOTSTRAP_SERVERS={bootstrap}, or unset it to run a local broker."
    )
    while True:
        if alive is not None and not alive():
            raise InfraError(f"The Kafka broker exited during startup.\n{explain()}")
        # Probe TCP first: aiokafka logs an error line for every refused connection,
        # which would flood the output while the JVM is still booting.
        if not await asyncio.to_thread(_tcp_reachable, bootstrap, 1.0):
            last_error = ConnectionRefusedError(f"nothing accepts connections at {bootstrap}")
            if loop.time() >= deadline:
                raise InfraError(
                    f"Kafka at {bootstrap} did not accept connections within {timeout:.0f} s.\n{explain()}"
                )
            await asyncio.sleep(0.2)
            continue
        admin = _admin(cluster, request_timeout_ms=5000)
        try:
            remaining = max(1.0, deadline - loop.time())
            await asyncio.wait_for(admin.start(), timeout=min(10.0, remaining))
            # A successful metadata round trip is all we need; [] asks for no topics.
            await asyncio.wait_for(admin.describe_topics([]), timeout=min(10.0, remaining))
            return
        except Exception as exc:  # noqa: BLE001 - any other failure here just means "not ready yet"
            if refusal := await _refusal(cluster):
                raise InfraError(
                    f"Kafka at {bootstrap} refused the credentials of {cluster.principal!r}: "
                    f"{refusal}\n{explain()}"
                ) from None
            last_error = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        if loop.time() >= deadline:
            raise InfraError(
                f"Kafka at {bootstrap} did not answer a metadata request within {timeout:.0f} s (last error: "
                f"{last_error!r}).\n{explain()}"
            )
        await asyncio.sleep(0.3)


async def create_topics(
    cluster: Cluster, topics: Iterable[str], partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the missing ``topics`` (replication factor 1) and wait until they have leaders.

    Idempotent: existing topics are left as they are, whatever their partition count.
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    names = list(dict.fromkeys(topics))
    if not names:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    bootstrap = cluster.bootstrap
    admin = _admin(cluster, request_timeout_ms=30000)
    await admin.start()
    try:
        while True:
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if not missing:
                break
            response = await admin.create_topics(
                [NewTopic(n, partitions, 1) for n in missing], timeout_ms=30000
            )
            retry = False
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                if code in (0, TopicAlreadyExistsError.errno):
                    continue
                error = for_code(code)
                if getattr(error, "retriable", False) and loop.time() < deadline:
                    retry = True
                    continue
                message = entry[2] if len(entry) > 2 and entry[2] else error.__name__
                raise InfraError(f"Creating Kafka topic {name!r} on {bootstrap} failed: {message}")
            if not retry:
                break
            await asyncio.sleep(0.5)
        # Producers right after us fail on "unknown topic / leader not available" until
        # every partition has a leader, so wait for that here, once.
        while True:
            meta = await admin.describe_topics(names)
            ready = len(meta) == len(names) and all(
                t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
                for t in meta
            )
            if ready:
                return
            if loop.time() >= deadline:
                raise InfraError(f"Kafka topics {names} on {bootstrap} got no partition leaders.")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def prepare_topics(cluster: Cluster, topics: EventTopics) -> None:
    """Grant the services their ACLs on ``topics``, then create them (see kafka_access).

    ACLs first: once a broker shows the new topics with leaders, it has applied every metadata
    record before them, the ACLs included, so the services are never refused on fresh topics.
    """
    admin = _admin(cluster, request_timeout_ms=30000)
    await admin.start()
    try:
        await grant_service_acls(admin, topics)
    finally:
        await admin.close()
    await create_topics(cluster, topics.names)


async def drop_topics(cluster: Cluster, topics: EventTopics) -> None:
    """Delete ``topics`` and the ACLs on them (a test's topics, after the test)."""
    await delete_topics(cluster, topics.names)
    admin = _admin(cluster, request_timeout_ms=30000)
    await admin.start()
    try:
        await revoke_topic_acls(admin, topics.names)
    finally:
        await admin.close()


async def delete_topics(cluster: Cluster, topics: Iterable[str]) -> None:
    """Delete ``topics`` (and their data); a topic that is already gone is no error."""
    from aiokafka.errors import UnknownTopicOrPartitionError

    admin = _admin(cluster, request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if names := [name for name in dict.fromkeys(topics) if name in existing]:
            try:
                await admin.delete_topics(names, timeout_ms=30000)
            except UnknownTopicOrPartitionError:
                pass  # deleted by someone else in between
    finally:
        await admin.close()


async def read_topic(
    cluster: Cluster, topic: str, *, client_id: str = "unbind-infra", timeout: float = 30
) -> list[Any]:
    """Every record of ``topic``, partition by partition, from the beginning to the end offsets
    taken when reading starts (records arriving meanwhile are left out: one consistent snapshot).

    No consumer group: reading moves nobody's offsets and waits for no rebalance. Raises InfraError
    when the cluster does not answer, the topic does not exist, or reading stalls for ``timeout`` s.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition  # imported lazily: `status` needs no aiokafka
    from aiokafka.errors import KafkaError

    bootstrap = cluster.bootstrap
    # Probe TCP first: a broker that is not there is one clear line, not aiokafka's retry log.
    if not await asyncio.to_thread(_tcp_reachable, bootstrap, 2.0):
        raise InfraError(
            f"Kafka at {bootstrap} is not reachable (nothing accepts connections). Start it (`unbind kafka "
            f"up` or `unbind up`) or set KAFKA_BOOTSTRAP_SERVERS."
        )
    consumer = AIOKafkaConsumer(
        **cluster.client_options(), client_id=client_id, group_id=None, enable_auto_commit=False
    )
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            numbers = await partitions_of(consumer, topic)
            if not numbers:
                raise InfraError(f"The topic {topic} does not exist on {bootstrap}.")
            partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
        return await _read_to(consumer, end, timeout)
    except TimeoutError:
        raise InfraError(
            f"Reading {topic} on {bootstrap} made no progress for {timeout:.0f} s; is the broker healthy?"
        ) from None
    except KafkaError as exc:
        raise InfraError(f"Reading {topic} on {bootstrap} failed: {type(exc).__name__}: {exc}") from None
    finally:
        await consumer.stop()


async def partitions_of(consumer: Any, topic: str) -> set[int]:
    """The partition numbers of `topic`, as a started consumer sees them."""
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        # The consumer has no metadata for a topic it is not subscribed to yet: ask for it.
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    return set(partitions or ())


async def consumer_lag(cluster: Cluster, topic: str, groups: Iterable[str]) -> dict[str, int]:
    """Per consumer group, how many records of `topic` it has not committed yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = _admin(cluster)
    consumer = AIOKafkaConsumer(
        **cluster.client_options(), enable_auto_commit=False, client_id="unbind-infra"
    )
    await admin.start()
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, number) for number in sorted(await partitions_of(consumer, topic))
        ]
        end = await consumer.end_offsets(partitions) if partitions else {}
        lag = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            lag[group] = sum(
                max(
                    0,
                    end[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0),
                )
                for tp in partitions
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _read_to(consumer: Any, end: dict[Any, int], timeout: float) -> list[Any]:
    """Records of the assigned partitions up to (not including) the ``end`` offsets."""
    by_partition: dict[Any, list[Any]] = {tp: [] for tp in end}
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while [tp for tp in end if await consumer.position(tp) < end[tp]]:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            by_partition[tp] += [record for record in records if record.offset < end[tp]]
        if batches:
            last_progress = loop.time()
        elif loop.time() - last_progress > timeout:
            raise TimeoutError
    return [record for records in by_partition.values() for record in records]


# --------------------------------------------------------------------------- public API


async def kafka_up_async(
    var_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    topics: EventTopics | None = DEFAULT_TOPICS,
    timeout: float = 90,
) -> Cluster:
    """Async ``kafka_up``: start (or reuse) the broker, prepare ``topics``, return the cluster."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        cluster = external_cluster(external)
        await _wait_for_metadata(cluster, timeout)
        if topics:
            await create_topics(cluster, topics.names)
        return cluster
    started = await asyncio.to_thread(_start_or_reuse, Path(var_dir), port, controller_port)
    paths = _Paths.of(var_dir)
    await _wait_for_metadata(
        started.cluster,
        timeout,
        alive=lambda: _pid_alive(started.pid),
        on_death=lambda: _broker_log_tail(paths),
    )
    if topics:
        await prepare_topics(started.cluster, topics)
    return started.cluster


def _run_coroutine(factory: Callable[[], Awaitable[_T]]) -> _T:
    """``asyncio.run`` that also works when called from code already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    # A running loop in this thread cannot be re-entered: use a private one in a worker.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def kafka_up(
    var_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    topics: EventTopics | None = DEFAULT_TOPICS,
    timeout: float = 90,
) -> Cluster:
    """Start (or reuse) the local broker, create ``topics`` and grant the services their ACLs on
    them (None: no topics); returns the cluster at "127.0.0.1:<port>", reached as the admin.

    With ``KAFKA_BOOTSTRAP_SERVERS`` set, starts nothing, creates the topics there (no ACLs: that
    cluster's are its operators') and returns it (see ``kafka_access.external_cluster``).
    Raises InfraError (Java missing/too old, port taken, broker died, credentials refused, ...).
    """
    return _run_coroutine(
        lambda: kafka_up_async(
            var_dir,
            port=port,
            controller_port=controller_port,
            topics=topics,
            timeout=timeout,
        )
    )


def kafka_down(var_dir: Path, timeout: float = 30) -> bool:
    """Stop the broker this var dir started (SIGTERM, then SIGKILL after ``timeout``).

    Returns True if a broker was stopped. A pid file naming any other process (a
    reused pid, another var dir's broker) is discarded without signalling anything.
    """
    paths = _Paths.of(var_dir)
    if not paths.root.is_dir():
        return False
    with _file_lock(paths.lock_file):
        pid = _our_live_pid(paths)
        if pid is None:
            return False
        _stop(pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            paths.pid_file.unlink()
        return True


def _stop(pid: int, timeout: float) -> None:
    """SIGTERM our broker (Kafka shuts down cleanly on it), SIGKILL after ``timeout`` s."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)


def _tcp_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if any host:port of a bootstrap list accepts TCP connections."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def kafka_status(var_dir: Path) -> dict:
    """{"running", "pid", "bootstrap", "external", "version"} for this var dir's broker.

    External mode (KAFKA_BOOTSTRAP_SERVERS set): running means its first address accepts
    TCP connections; pid is None.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        return {
            "running": _tcp_reachable(external),
            "pid": None,
            "bootstrap": external,
            "external": True,
            "version": KAFKA_VERSION,
        }
    paths = _Paths.of(var_dir)
    pid = _our_live_pid(paths) if paths.root.is_dir() else None
    port = _read_state(paths).get("port", DEFAULT_PORT)
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": f"127.0.0.1:{port}",
        "external": False,
        "version": KAFKA_VERSION,
    }


def local_cluster(var_dir: Path, bootstrap: str) -> Cluster | None:
    """The cluster at ``bootstrap`` as its admin, if it is this var dir's broker (else None)."""
    paths = _Paths.of(var_dir)
    passwords = read_credentials(paths.credentials) if paths.root.is_dir() else {}
    if ADMIN in passwords and bootstrap == f"127.0.0.1:{_read_state(paths).get('port', DEFAULT_PORT)}":
        return Cluster.local(bootstrap, passwords)
    return None


def admin_cluster(var_dir: Path, bootstrap: str) -> Cluster:
    """The cluster at ``bootstrap`` as the unbind tools reach it: as the admin of this var dir's
    broker when it is that one, else as ``kafka_access.external_cluster`` says."""
    return local_cluster(var_dir, bootstrap) or external_cluster(bootstrap)


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise InfraError(f"{name}={value!r} is not a port number.") from None


def cli(argv: list[str], var_dir: Path) -> int:
    """``unbind kafka up|down|status|secrets``. Ports default to $KAFKA_PORT / $KAFKA_CONTROLLER_PORT.

    Exit codes: 0 success (``status`` also when not running), 1 InfraError, 2 usage.
    """
    parser = argparse.ArgumentParser(prog="unbind kafka", description="Local Kafka broker.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the broker (if needed) and create topics")
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--controller-port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=90.0)
    sub.add_parser("down", help="stop the broker started from this var dir")
    sub.add_parser("status", help="show whether the broker runs")
    made = sub.add_parser(
        "secrets",
        help=(
            "make the Kafka passwords, CA and broker certificate of a compose (or, --k8s, Kubernetes) "
            "installation"
        ),
    )
    made.add_argument(
        "--out",
        type=Path,
        default=None,
        help=(
            "folder (compose; default deploy/secrets/kafka) or env file (--k8s; default "
            "deploy/k8s/common/kafka.env)"
        ),
    )
    made.add_argument(
        "--host",
        action="append",
        default=[],
        help="another name the broker is reached by (its certificate names kafka, localhost, 127.0.0.1)",
    )
    made.add_argument(
        "--k8s", action="store_true", help="only the passwords, for the Secret unbind-kafka of deploy/k8s"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on -h / bad usage; a CLI handler must return
        return int(exc.code or 0)
    paths = _Paths.of(var_dir)
    try:
        if args.command == "secrets":
            from tools import kafka_secrets

            if args.k8s:
                written = kafka_secrets.write_k8s_secrets(args.out or kafka_secrets.DEFAULT_K8S_FILE)
            else:
                written = kafka_secrets.write_compose_secrets(
                    args.out or kafka_secrets.DEFAULT_OUT, tuple(args.host)
                )
            print(f"kafka: wrote {', '.join(str(path) for path in written)} (passwords not shown)")
        elif args.command == "up":
            port = args.port if args.port is not None else _env_port("KAFKA_PORT", DEFAULT_PORT)
            cport = (
                args.controller_port
                if args.controller_port is not None
                else _env_port("KAFKA_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT)
            )
            before = kafka_status(var_dir)
            t0 = time.monotonic()
            bootstrap = kafka_up(var_dir, port=port, controller_port=cport, timeout=args.timeout).bootstrap
            after = kafka_status(var_dir)
            if after["external"]:
                print(f"kafka: using external cluster {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
            elif before["running"] and before["pid"] == after["pid"]:
                print(f"kafka: already running at {bootstrap} (pid {after['pid']})")
            else:
                print(
                    f"kafka: started Kafka {KAFKA_VERSION} at {bootstrap} (pid {after['pid']}) in "
                    f"{time.monotonic() - t0:.1f} s"
                )
            print(
                f"kafka: topics ready: {', '.join(DEFAULT_TOPICS.names)} ({DEFAULT_PARTITIONS} partitions "
                f"each)"
            )
            if not after["external"]:
                print(
                    f"kafka: SASL/SCRAM users and ACLs: one principal per service, passwords in "
                    f"{paths.credentials}"
                )
                print(f"kafka: logs in {paths.logs}")
        elif args.command == "down":
            pid = kafka_status(var_dir)["pid"]
            if kafka_down(var_dir):
                print(f"kafka: stopped broker pid {pid}")
            else:
                print(f"kafka: no broker started from {var_dir} is running")
        else:
            st = kafka_status(var_dir)
            if st["external"]:
                state = "reachable" if st["running"] else "NOT reachable"
                print(f"kafka: external cluster {st['bootstrap']} is {state}")
            elif st["running"]:
                print(
                    f"kafka: running at {st['bootstrap']} (pid {st['pid']}, Kafka {st['version']}); logs in "
                    f"{paths.logs}"
                )
            else:
                print("kafka: not running")
    except InfraError as exc:
        print(f"kafka: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # handy without the unbind entry point: python -m tools.kafka up
    sys.exit(cli(sys.argv[1:], Path(os.environ.get("UNBIND_VAR_DIR", "var"))))
