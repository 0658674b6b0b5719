"""deploy/install-system-deps.sh, which `make up` and `make test` run first: executed against a fake
Debian machine. The files it looks for are under UNBIND_SYSROOT, the commands it runs are stubs in the
fake machine's /usr/bin (the only folder on PATH), and apt-get is a stub that records its arguments and
lays down what each package would bring, so no real package is ever installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "install-system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"


def sh(body: str) -> str:
    return f"#!/bin/sh\n{body}\n"


def java(version: str) -> str:
    return sh(f"echo 'openjdk version \"{version}\" 2025-04-15' >&2")


# What each Debian package brings to the fake machine: path under the root -> file text. The python3
# stub exits 0 when it is "3.11+ with ensurepip", which only python3-venv (installed after it) makes true.
PACKAGES: dict[str, dict[str, str]] = {
    "python3": {"usr/bin/python3": sh("exit 1")},
    "python3-venv": {"usr/bin/python3": sh("exit 0")},
    "default-jre-headless": {"usr/bin/java": java("17.0.15")},
    "maven": {"usr/bin/mvn": sh("exit 0")},
    "postgresql": {
        "usr/lib/postgresql/15/bin/pg_ctl": sh("exit 0"),
        "usr/lib/postgresql/15/bin/initdb": sh("exit 0"),
        "etc/passwd": "postgres:x:104:111:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n",
    },
    "util-linux": {"usr/bin/runuser": sh("exit 0")},
    "chromium": {"usr/bin/chromium": sh("exit 0")},
    "fonts-wqy-microhei": {"usr/share/fonts/truetype/wqy/wqy-microhei.ttc": "a font\n"},
    "make": {"usr/bin/make": sh("exit 0")},
}
UP = ["python3", "python3-venv", "default-jre-headless", "maven"]
TEST = [*UP, "postgresql", "util-linux", "chromium", "fonts-wqy-microhei", "make"]

APT_GET = """#!{python}
import json, os, sys
from pathlib import Path

with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "install":
    for package in (arg for arg in sys.argv[2:] if not arg.startswith("-")):
        for rel, text in json.loads({packages!r}).get(package, {{}}).items():
            path = Path(os.environ["UNBIND_SYSROOT"], rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
"""
# `id -u` says who we are; `id -u NAME` fails unless NAME is in the fake /etc/passwd.
ID = sh(
    'if [ "$*" = -u ]; then echo {uid}; else {grep} -q "^$2:" "$UNBIND_SYSROOT/etc/passwd" 2>/dev/null; fi'
)


class Machine:
    """A fake Debian machine in folder ``tmp`` with the given packages installed (and apt-get)."""

    def __init__(self, tmp: Path, packages: list[str], *, apt_get: bool = True) -> None:
        self.root, self.log = tmp / "sysroot", tmp / "apt-get.jsonl"
        for package in packages:
            self.write(PACKAGES[package])
        if apt_get:
            apt = APT_GET.format(python=sys.executable, log=str(self.log), packages=json.dumps(PACKAGES))
            self.write({"usr/bin/apt-get": apt})

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)

    def run(self, *args: str, uid: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        self.write({"usr/bin/id": ID.format(uid=uid, grep=shutil.which("grep"))})
        return subprocess.run(
            [BASH, str(SCRIPT), *args],
            cwd=self.root.parent,  # no .venv there: the Python check runs
            env={"PATH": str(self.root / "usr" / "bin"), "UNBIND_SYSROOT": str(self.root), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apt_calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


def install_call(*packages: str) -> list[str]:
    return ["install", "-y", "-q", "--no-install-recommends", *packages]


@pytest.mark.parametrize(
    "args", [("--check", "up"), ("--ensure", "up"), ("--check", "test"), ("--ensure", "test")]
)
def test_nothing_missing_is_silent_and_runs_no_apt_get(tmp_path: Path, args: tuple[str, str]) -> None:
    machine = Machine(tmp_path, TEST)
    out = machine.run(*args)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert machine.apt_calls() == []


def test_up_needs_no_postgresql_chromium_or_font(tmp_path: Path) -> None:
    machine = Machine(tmp_path, UP)
    assert machine.run("--ensure", "up").returncode == 0
    out = machine.run("--check", "test")
    assert out.returncode == 1
    assert "Debian packages: postgresql util-linux chromium fonts-wqy-microhei make" in out.stderr
    for what in (
        "PostgreSQL server binaries",
        "'postgres' OS user",
        "runuser",
        "Chromium",
        "CJK font",
        "make",
    ):
        assert what in out.stderr
    assert machine.apt_calls() == []


@pytest.mark.parametrize(
    ("installed", "args", "installs"),
    [
        pytest.param(
            UP + ["util-linux", "make"],
            ("--ensure", "test"),
            ["postgresql", "chromium", "fonts-wqy-microhei"],
            id="test-on-an-up-machine",
        ),
        pytest.param([], ("--ensure", "up"), UP, id="up-on-a-bare-machine"),
        pytest.param([], ("--ensure", "test"), TEST, id="test-on-a-bare-machine"),
        pytest.param([], (), TEST, id="by-hand-on-a-bare-machine"),
        pytest.param(
            ["python3", *TEST[2:]], ("--ensure", "up"), ["python3", "python3-venv"], id="python-without-venv"
        ),
    ],
)
def test_missing_as_root_installs_the_packages_then_nothing(
    tmp_path: Path, installed: list[str], args: tuple[str, ...], installs: list[str]
) -> None:
    machine = Machine(tmp_path, installed)
    out = machine.run(*args)
    assert out.returncode == 0, out.stderr
    assert f"installing {' '.join(installs)}" in out.stdout
    assert machine.apt_calls() == [["update", "-q"], install_call(*installs)]
    assert machine.run(*args).returncode == 0
    assert len(machine.apt_calls()) == 2  # the second run found everything


@pytest.mark.parametrize(
    ("version", "too_old"), [("1.8.0_392", True), ("11.0.22", True), ("17.0.15", False), ("21", False)]
)
def test_java_older_than_17_is_replaced(tmp_path: Path, version: str, too_old: bool) -> None:
    machine = Machine(tmp_path, UP)
    machine.write({"usr/bin/java": java(version)})
    out = machine.run("--ensure", "up")
    assert out.returncode == 0, out.stderr
    assert machine.apt_calls() == (
        [["update", "-q"], install_call("default-jre-headless")] if too_old else []
    )


def test_missing_as_non_root_names_the_one_command(tmp_path: Path) -> None:
    # As non-root PostgreSQL runs as ourselves: no `postgres` user or runuser is needed.
    machine = Machine(tmp_path, [p for p in TEST if p not in ("chromium", "util-linux")])
    (machine.root / "etc" / "passwd").unlink()
    out = machine.run("--ensure", "test", uid=1000)
    assert out.returncode == 1
    assert "Chromium for the dashboard test (/usr/bin/chromium)" in out.stderr
    assert "postgres" not in out.stderr and "runuser" not in out.stderr
    assert f"sudo bash {SCRIPT}" in out.stderr
    assert machine.apt_calls() == []


def test_check_never_installs(tmp_path: Path) -> None:
    machine = Machine(tmp_path, UP)
    assert machine.run("--check", "test").returncode == 1
    assert machine.apt_calls() == []


def test_without_apt_get_it_names_the_debian_packages(tmp_path: Path) -> None:
    out = Machine(tmp_path, TEST[:-1], apt_get=False).run("--ensure", "test")
    assert out.returncode == 1
    assert "no apt-get" in out.stderr and "(Debian calls them: make)" in out.stderr


def test_what_apt_get_did_not_bring_fails(tmp_path: Path) -> None:
    machine = Machine(tmp_path, [p for p in TEST if p != "chromium"])
    out = machine.run("--ensure", "test", UNBIND_CHROMIUM="/opt/chrome/chrome")
    assert out.returncode == 1
    assert machine.apt_calls() == [["update", "-q"], install_call("chromium")]
    assert (
        "still missing after apt-get install" in out.stderr
        and "UNBIND_CHROMIUM=/opt/chrome/chrome" in out.stderr
    )


def test_bad_arguments_print_the_usage(tmp_path: Path) -> None:
    machine = Machine(tmp_path, TEST)
    for args in (("--ensure",), ("--install", "test"), ("--check", "prod")):
        out = machine.run(*args)
        assert (out.returncode, out.stderr.startswith("usage:")) == (2, True)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("goal", "then"), [("test", "-m pytest"), ("up", "bin/unbind up")])
def test_make_ensures_the_system_packages_before_anything_else(goal: str, then: str) -> None:
    # Not as a sub-make of `make test`, whose flags would carry over (and add "Entering directory").
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(
        ["make", "-n", goal], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    lines = out.stdout.splitlines()
    assert f"bash deploy/install-system-deps.sh --ensure {goal}" in lines[0]  # before the venv is made, too
    assert then in lines[-1]
