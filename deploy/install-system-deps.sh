#!/usr/bin/env bash
# What `make up` and `make test` need from the machine, checked cheaply and installed on Debian.
#
#   install-system-deps.sh --check PROFILE    exit 0 when the profile's needs are met, else list what is missing
#   install-system-deps.sh --ensure PROFILE   the check; when something is missing, install it with apt-get
#                                             as root, else print the one command to run; exit 1 if not met
#   install-system-deps.sh                    --ensure test: everything, the command to run by hand (as root)
#
# The Makefile runs `--ensure up` before `make up` and `--ensure test` before `make test`, so the check
# runs no apt-get or dpkg and only one short `java -version`; apt-get runs only when something is missing.
#
# Profiles (Debian package in brackets):
#   up    Python 3.11+ with venv, until $VENV (.venv) exists [python3 python3-venv]
#         Java 17+, for the Kafka 4.x broker, $JAVA_HOME/bin/java or java on PATH [default-jre-headless]
#         Maven, which downloads the broker's jars from Maven Central once [maven]
#   test  all of up, and
#         PostgreSQL server binaries for the private test cluster (tools/postgres.py) [postgresql]
#         as root: the `postgres` OS user [postgresql] and runuser [util-linux] to run them as
#         Chromium for the dashboard test, driven by Playwright's Python package (Playwright's own
#         browser download is not used), /usr/bin/chromium or $UNBIND_CHROMIUM [chromium]
#         the CJK TrueType font the account report PDF embeds (services/binding/report.py) [fonts-wqy-microhei]
#         make, the project's entry point, for a machine where this script runs first [make]
#
# Tests run it against a fake machine: the files it looks for are under $UNBIND_SYSROOT (default /),
# and the commands (java, mvn, id, apt-get, ...) are whatever PATH finds.
set -euo pipefail

usage() {
  echo "usage: $0 [--check|--ensure up|test]" >&2
  exit 2
}

mode=--ensure profile=test by_hand=true
if [ "$#" -gt 0 ]; then
  by_hand=false
  [ "$#" -eq 2 ] || usage
  mode="$1" profile="$2"
fi
case "$mode" in --check | --ensure) ;; *) usage ;; esac
case "$profile" in
  up) checks=(python java maven) ;;
  test) checks=(python java maven postgres chromium font make) ;;
  *) usage ;;
esac

sysroot="${UNBIND_SYSROOT:-}"
is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

missing=()   # what is missing, one line each
packages=()  # the Debian packages that bring it

need() {  # need DESCRIPTION PACKAGE...
  missing+=("$1")
  shift
  local pkg have
  for pkg in "$@"; do
    for have in "${packages[@]}"; do [ "$have" = "$pkg" ] && continue 2; done
    packages+=("$pkg")
  done
}

check_python() {
  local python="${PYTHON:-python3}"
  # Once the virtualenv exists, Python's venv module is no longer needed (and a Python start is saved).
  [ -x "${VENV:-.venv}/bin/python" ] && return
  "$python" -c 'import ensurepip, sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 ||
    need "Python 3.11+ with its venv module ($python)" python3 python3-venv
}

check_java() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java" out major=
  # `java -version` prints e.g. openjdk version "17.0.15" 2025-04-15, or "1.8.0_392" for Java 8.
  if out="$("$java" -version 2>&1)" && [[ $out =~ version\ \"([0-9]+)(\.([0-9]+))? ]]; then
    major="${BASH_REMATCH[1]}"
    [ "$major" = 1 ] && major="${BASH_REMATCH[3]}"
  fi
  if [ -z "$major" ]; then
    need "Java 17+ for the Kafka broker (no working $java${JAVA_HOME:+; or fix JAVA_HOME})" default-jre-headless
  elif [ "$major" -lt 17 ]; then
    need "Java 17+ for the Kafka broker ($java is Java $major; or point JAVA_HOME at a newer one)" default-jre-headless
  fi
}

check_maven() {
  command -v mvn >/dev/null || need "Maven (mvn), which downloads the Kafka jars once" maven
}

check_postgres() {
  local bin pg_ctl found=false
  for bin in "$sysroot"/usr/lib/postgresql/*/bin; do
    [ -x "$bin/pg_ctl" ] && [ -x "$bin/initdb" ] && found=true
  done
  if ! $found && pg_ctl="$(command -v pg_ctl)"; then
    [ -x "${pg_ctl%/*}/initdb" ] && found=true
  fi
  $found || need "PostgreSQL server binaries (initdb, pg_ctl)" postgresql
  # PostgreSQL refuses to run as root: tools/postgres.py then runs it as `postgres` through runuser.
  if $is_root; then
    id -u postgres >/dev/null 2>&1 || need "the 'postgres' OS user that runs PostgreSQL when we are root" postgresql
    command -v runuser >/dev/null || need "runuser, to run PostgreSQL as 'postgres'" util-linux
  fi
}

check_chromium() {
  if [ -n "${UNBIND_CHROMIUM:-}" ]; then
    command -v "$UNBIND_CHROMIUM" >/dev/null || need "Chromium for the dashboard test (UNBIND_CHROMIUM=$UNBIND_CHROMIUM)" chromium
  else
    [ -x "$sysroot/usr/bin/chromium" ] || need "Chromium for the dashboard test (/usr/bin/chromium)" chromium
  fi
}

check_font() {
  # The candidates of services/binding/report.py: fonts-wqy-microhei, else fonts-wqy-zenhei.
  [ -f "$sysroot/usr/share/fonts/truetype/wqy/wqy-microhei.ttc" ] ||
    [ -f "$sysroot/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc" ] ||
    need "a CJK font for the account report PDF" fonts-wqy-microhei
}

check_make() {
  command -v make >/dev/null || need "make" make
}

run_checks() {
  missing=() packages=()
  local check
  for check in "${checks[@]}"; do "check_$check"; done
}

say_missing() {  # say_missing HEADLINE
  echo "install-system-deps: $1" >&2
  printf '  - %s\n' "${missing[@]}" >&2
}

run_checks
if [ "${#missing[@]}" -eq 0 ]; then
  if $by_hand; then echo "install-system-deps: this machine has what 'make up' and 'make test' need"; fi
  exit 0
fi
if [ "$mode" = --check ]; then
  say_missing "'make $profile' needs what this machine lacks (Debian packages: ${packages[*]}):"
  exit 1
fi

if ! $is_root || ! command -v apt-get >/dev/null; then
  say_missing "'make $profile' needs what this machine lacks:"
  if command -v apt-get >/dev/null; then
    echo "Install them with this one command, then run 'make $profile' again:" >&2
    echo "  sudo bash $0" >&2
  else
    echo "This is no Debian machine (no apt-get): install them with its package manager" \
         "(Debian calls them: ${packages[*]}), then run 'make $profile' again." >&2
  fi
  exit 1
fi

echo "install-system-deps: installing ${packages[*]} for 'make $profile'"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
run_checks
if [ "${#missing[@]}" -gt 0 ]; then
  say_missing "still missing after apt-get install:"
  exit 1
fi
