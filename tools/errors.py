"""Errors and small diagnostics shared by the local-infrastructure commands.

The helpers here exist so that every InfraError can say *what* is wrong and
*what to do* (who holds a port, the tail of a log) instead of a bare traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


class InfraError(Exception):
    """A failure of local infrastructure, with a message saying what is wrong and what to do."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing can bind ``host:port`` right now (someone listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so sockets lingering in TIME_WAIT (a server that just
        # stopped) do not count as "taken"; a live listener still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP listeners on ``port`` (any address), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def port_owner(port: int) -> str | None:
    """Best-effort description ("pid 123: java ...") of the process listening on ``port``.

    Reads /proc, so it only sees processes this user may inspect (all of them as root).
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry.name}/fd/{fd}") in wanted:
                    return f"pid {entry.name}: {process_cmdline(int(entry.name), limit=160)}"
            except OSError:
                continue
    return None


def process_cmdline(pid: int, limit: int | None = None) -> str:
    """The command line of ``pid`` as one string ('' if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    if limit is not None and len(text) > limit:
        # Keep both ends: the program and, for java, the main class and its config file.
        head = limit // 3
        text = text[:head] + " ... " + text[-(limit - head - 5) :]
    return text


def port_taken_message(port: int, what: str, hint: str) -> str:
    """Message for a port that is already taken: who holds it and how to proceed."""
    owner = port_owner(port)
    held_by = f" by {owner}" if owner else ""
    return (
        f"127.0.0.1:{port} (the {what} port) is already in use{held_by}. Stop that process (e.g. `kill "
        f"<pid>`) or {hint}"
    )


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a (log) file, or a note that it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            # Logs can be large; the last 64 KiB always hold 30 ordinary lines.
            fh.seek(max(0, size - 65536))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])
