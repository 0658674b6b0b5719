"""A private PostgreSQL cluster for development and tests.

``postgres_up`` runs ``initdb`` once and ``pg_ctl start`` from the installed
PostgreSQL binaries (Debian: /usr/lib/postgresql/<ver>/bin, newest wins). It
never touches the system's own cluster: it has its own data dir and port
(default 55432), listens on 127.0.0.1 only and trusts connections from there.

PostgreSQL refuses to run as root, so as root every server command runs as the
``postgres`` OS user (``runuser -u postgres --``); as any other user it runs
directly. The data dir is ``<var>/postgres/data``, except when running as root
and the ``postgres`` user cannot traverse ``<var>`` (e.g. pytest's tmp dirs under
the 0700 /tmp/pytest-of-root, or a 0700 home directory): then it is
``/tmp/unbind-pg-<hash of the var path>/data`` and ``<var>/postgres/DATA_DIR``
says where it went. ``postgres_data_dir`` tells which is used.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import glob
import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from tools.errors import InfraError, port_in_use, port_taken_message, tail

DEFAULT_PORT = 55432
PG_USER = "postgres"  # both the OS user servers run as and the database superuser
# Where Debian (and Ubuntu) install server binaries; a module constant so tests can
# point it somewhere empty to simulate "PostgreSQL not installed".
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
LOG_TAIL_LINES = 30
# Unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 90

_T = TypeVar("_T")


def _install_hint() -> str:
    return (
        "Run `bash deploy/install-system-deps.sh` (as root), or `apt-get update && apt-get install -y "
        "postgresql`."
    )


def find_pg_bin() -> Path:
    """Folder with ``initdb`` and ``pg_ctl``: newest /usr/lib/postgresql/<ver>/bin, else PATH."""

    def version_key(path: str) -> tuple[int, ...]:
        ver = Path(path).parent.name
        return tuple(int(x) for x in re.findall(r"\d+", ver)) or (0,)

    for cand in sorted(glob.glob(PG_BIN_GLOB), key=version_key, reverse=True):
        if all(os.access(os.path.join(cand, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(cand)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and os.access(Path(pg_ctl).parent / "initdb", os.X_OK):
        return Path(pg_ctl).parent
    raise InfraError(f"PostgreSQL server binaries (initdb, pg_ctl) were not found. {_install_hint()}")


def _is_root() -> bool:
    return os.geteuid() == 0


def _pg_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        raise InfraError(
            f"Running as root, but there is no `{PG_USER}` OS user to run PostgreSQL as "
            f"(PostgreSQL refuses to run as root). {_install_hint()} The Debian package "
            "creates that user."
        ) from None


def _as_server_user(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so it runs as the postgres OS user when we are root."""
    if not _is_root():
        return cmd
    _pg_account()
    return ["runuser", "-u", PG_USER, "--", *cmd]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # cwd=/ because the server user usually may not enter the caller's cwd (e.g. /root).
    try:
        return subprocess.run(
            _as_server_user(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s.") from exc


@dataclass(frozen=True)
class _Paths:
    """Locations for one var dir's cluster."""

    var_postgres: Path  # <var>/postgres: always ours, holds the DATA_DIR note
    root: Path  # owned by the server user: data/ and postgres.log

    @classmethod
    def of(cls, var_dir: Path) -> _Paths:
        var_dir = Path(var_dir).resolve()
        var_postgres = var_dir / "postgres"
        if _is_root() and not _server_user_can_traverse(var_dir):
            digest = hashlib.sha256(str(var_dir).encode()).hexdigest()[:12]
            return cls(var_postgres, Path(f"/tmp/unbind-pg-{digest}"))
        return cls(var_postgres, var_postgres)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"


def _server_user_can_traverse(path: Path) -> bool:
    """True if the postgres OS user can reach ``path`` (search permission on every parent)."""
    probe = path
    while not probe.exists():  # not created yet: what matters is its nearest existing parent
        probe = probe.parent
    try:
        account = _pg_account()
    except InfraError:
        return True  # no such user: postgres_up reports that more clearly later
    # Walk the path ourselves (cheaper than a subprocess); ACLs are rare on these dirs.
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for part in (probe, *probe.parents):
        st = part.stat()
        if st.st_uid == account.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return False
    return True


def postgres_data_dir(var_dir: Path) -> Path:
    """The data directory ``postgres_up(var_dir)`` uses (see the module docstring)."""
    return _Paths.of(var_dir).data


def _prepare_root(paths: _Paths) -> None:
    """Create the server-owned folder (0700, as PostgreSQL insists) and the DATA_DIR note."""
    paths.var_postgres.mkdir(parents=True, exist_ok=True)
    if paths.root != paths.var_postgres:
        (paths.var_postgres / "DATA_DIR").write_text(
            f"{paths.data}\n# The postgres OS user cannot reach {paths.var_postgres.parent}, so the cluster "
            f"lives in /tmp.\n"
        )
    paths.root.mkdir(parents=True, exist_ok=True)
    if _is_root():
        account = _pg_account()
        st = paths.root.stat()
        # /tmp is world-writable: refuse a folder someone else planted there.
        if st.st_uid not in (0, account.pw_uid):
            raise InfraError(f"{paths.root} belongs to uid {st.st_uid}; remove it and retry.")
        os.chown(paths.root, account.pw_uid, account.pw_gid)
    os.chmod(paths.root, 0o700)


def _write_server_file(path: Path, text: str) -> None:
    path.write_text(text)
    if _is_root():
        account = _pg_account()
        os.chown(path, account.pw_uid, account.pw_gid)


_HBA = """\
# Written by tools/postgres.py: a development cluster that trusts local
# connections. TCP only from 127.0.0.1 (the server listens nowhere else).
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
"""


def _configure(paths: _Paths, port: int) -> None:
    """(Re)write our settings; an include at the end of postgresql.conf makes them win."""
    socket_dir = paths.data if len(str(paths.data)) <= _MAX_SOCKET_DIR_LEN else Path("/tmp")
    settings = f"""\
# Written by tools/postgres.py on every `postgres up`; edit that file instead.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
# Durability stays on: tests should see the same commit semantics as production.
fsync = on
max_connections = 200
"""
    _write_server_file(paths.data / "unbind.conf", settings)
    _write_server_file(paths.data / "pg_hba.conf", _HBA)
    conf = paths.data / "postgresql.conf"
    include = "include_if_exists = 'unbind.conf'"
    if include not in conf.read_text():
        with open(conf, "a") as fh:
            fh.write(f"\n{include}\n")


def _initdb(bin_dir: Path, paths: _Paths) -> None:
    if (paths.data / "PG_VERSION").is_file():
        return
    out = _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(paths.data),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ],
        timeout=180,
    )
    if out.returncode != 0:
        raise InfraError(
            f"initdb into {paths.data} failed (exit "
            f"{out.returncode}):\n{(out.stdout + out.stderr).strip()[-3000:]}"
        )


def _postmaster_info(paths: _Paths) -> tuple[int, int] | None:
    """(pid, port) from postmaster.pid if that server process is alive, else None."""
    try:
        lines = (paths.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # stale file from a crash: pg_ctl start copes with it
    # Also require our data dir in its command line (`postgres -D <data>`), so a
    # recycled pid of some other process is never taken for our server.
    args = cmd.split(b"\0")
    ours = any(a.endswith(b"postgres") for a in args[:1]) and str(paths.data).encode() in args
    return (pid, port) if ours else None


def _url(port: int) -> str:
    return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{port}"


def postgres_up(var_dir: Path, *, port: int = DEFAULT_PORT, timeout: float = 60) -> str:
    """Init (once) and start this var dir's cluster; returns the server's base URL.

    The URL is "postgresql+asyncpg://postgres@127.0.0.1:<port>" (no database part).

    Idempotent: if it already runs on ``port``, just returns the URL.
    """
    bin_dir = find_pg_bin()
    paths = _Paths.of(var_dir)
    running = _postmaster_info(paths)
    if running is not None:
        pid, running_port = running
        if running_port != port:
            raise InfraError(
                f"The PostgreSQL cluster of {var_dir} (pid {pid}) already runs on port {running_port}, not "
                f"{port}. Use that port, or `unbind postgres down` first."
            )
        return _url(port)
    if port_in_use(port):
        raise InfraError(port_taken_message(port, "PostgreSQL", "choose another port (POSTGRES_PORT)."))
    _prepare_root(paths)
    _initdb(bin_dir, paths)
    _configure(paths, port)
    out = _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(paths.data),
            "-l",
            str(paths.log),
            "-w",
            "-t",
            str(max(1, int(timeout))),
            "start",
        ],
        timeout=timeout + 30,
    )
    if out.returncode != 0 or _postmaster_info(paths) is None:
        raise InfraError(
            f"PostgreSQL did not start (pg_ctl exit {out.returncode}): "
            f"{(out.stdout + out.stderr).strip()[-1000:]}\n"
            f"--- last lines of {paths.log} ---\n{tail(paths.log, LOG_TAIL_LINES)}"
        )
    return _url(port)


def postgres_down(var_dir: Path) -> bool:
    """Stop this var dir's cluster (fast shutdown); returns whether one was running."""
    paths = _Paths.of(var_dir)
    if _postmaster_info(paths) is None:
        return False
    bin_dir = find_pg_bin()
    out = _run(
        [str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", "fast", "-w", "-t", "60", "stop"], timeout=90
    )
    if out.returncode != 0:
        raise InfraError(
            f"pg_ctl stop for {paths.data} failed (exit {out.returncode}): "
            f"{(out.stdout + out.stderr).strip()[-1000:]}"
        )
    return True


def postgres_status(var_dir: Path) -> dict:
    """{"running", "pid", "port", "url", "data_dir", "log"} of this var dir's cluster."""
    paths = _Paths.of(var_dir)
    info = _postmaster_info(paths)
    pid, port = info if info else (None, None)
    return {
        "running": info is not None,
        "pid": pid,
        "port": port,
        "url": _url(port) if port else None,
        "data_dir": str(paths.data),
        "log": str(paths.log),
    }


def _asyncpg_dsn(base_url: str, database: str) -> str:
    """postgresql+asyncpg://user@host:port[/x] -> postgresql://user@host:port/<database>."""
    parts = urlsplit(base_url)
    return urlunsplit(("postgresql", parts.netloc, "/" + database, parts.query, ""))


async def ensure_database(base_url: str, name: str) -> str:
    """Create database ``name`` if missing; returns ``base_url + "/" + name``."""
    import asyncpg  # lazily: the up/down/status commands do not need it

    conn = await asyncpg.connect(_asyncpg_dsn(base_url, "postgres"), timeout=15)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                await conn.execute(f"CREATE DATABASE {quoted}")
            except asyncpg.exceptions.DuplicateDatabaseError:
                pass  # created concurrently by another test worker: fine
    finally:
        await conn.close()
    return base_url.rstrip("/") + "/" + name


async def drop_database(base_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing the connections still open to it (a scratch
    database such as the bench's skeleton's)."""
    import asyncpg  # lazily: the up/down/status commands do not need it

    conn = await asyncpg.connect(_asyncpg_dsn(base_url, "postgres"), timeout=15)
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


def _run_coroutine(factory: Callable[[], Awaitable[_T]]) -> _T:
    """``asyncio.run`` that also works when called from inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def cli(argv: list[str], var_dir: Path) -> int:
    """``unbind postgres up|down|status``; port defaults to $POSTGRES_PORT or 55432.

    ``up --database NAME`` also creates that database. Exit codes: 0 ok (``status``
    also when stopped), 1 InfraError, 2 usage.
    """
    parser = argparse.ArgumentParser(prog="unbind postgres", description="Local PostgreSQL.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="init (once) and start the cluster")
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=60.0)
    up.add_argument("--database", action="append", default=[], help="create this database too")
    sub.add_parser("down", help="stop the cluster")
    sub.add_parser("status", help="show whether the cluster runs")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on -h / bad usage; a CLI handler must return
        return int(exc.code or 0)
    try:
        if args.command == "up":
            port = args.port
            if port is None:
                env = os.environ.get("POSTGRES_PORT")
                try:
                    port = int(env) if env else DEFAULT_PORT
                except ValueError:
                    raise InfraError(f"POSTGRES_PORT={env!r} is not a port number.") from None
            was_running = postgres_status(var_dir)["running"]
            url = postgres_up(var_dir, port=port, timeout=args.timeout)
            st = postgres_status(var_dir)
            verb = "already running" if was_running else "started"
            print(f"postgres: {verb} at {url} (pid {st['pid']})")
            print(f"postgres: data in {st['data_dir']}, log {st['log']}")
            for name in args.database:
                db_url = _run_coroutine(lambda n=name: ensure_database(url, n))
                print(f"postgres: database ready: {db_url}")
        elif args.command == "down":
            pid = postgres_status(var_dir)["pid"]
            if postgres_down(var_dir):
                print(f"postgres: stopped (pid {pid})")
            else:
                print(f"postgres: no cluster of {var_dir} is running")
        else:
            st = postgres_status(var_dir)
            if st["running"]:
                print(
                    f"postgres: running at {st['url']} (pid {st['pid']}); data {st['data_dir']}, log "
                    f"{st['log']}"
                )
            else:
                print(f"postgres: not running (data {st['data_dir']})")
    except InfraError as exc:
        print(f"postgres: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # handy without the unbind entry point: python -m tools.postgres up
    sys.exit(cli(sys.argv[1:], Path(os.environ.get("UNBIND_VAR_DIR", "var"))))
