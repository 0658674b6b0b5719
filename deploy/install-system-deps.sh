#!/usr/bin/env bash
# Installs the system packages the local infrastructure needs on Debian 12, as root.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
#   - postgresql: server binaries for the private dev/test cluster (tools/postgres.py)
#   - procps:     ps/free/top, to inspect the broker and server processes by hand
#   - util-linux: runuser, to run PostgreSQL as the `postgres` user when we are root
#   - make:       the project's entry point (`make test`)
#   - fonts-wqy-microhei: the CJK TrueType font embedded in the account report PDF
#                 (services/binding/report.py)
#   - chromium:   the headless browser of the dashboard test, driven by Playwright's Python
#                 package (Playwright's own browser download is not used)
# Java 17+ and Maven are expected to be on the machine already (the Kafka broker is
# run from Maven Central jars); they are checked, not installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: must run as root (it uses apt-get)." >&2
  exit 1
fi

need_pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# Any installed PostgreSQL server (e.g. postgresql-15) is enough; otherwise the meta package.
if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
  need_pkgs+=(postgresql)
fi
for pkg in procps util-linux make fonts-wqy-microhei chromium; do
  have_pkg "$pkg" || need_pkgs+=("$pkg")
done

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "install-system-deps: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
else
  echo "install-system-deps: system packages already present"
fi

# --- checks only -------------------------------------------------------------
status=0
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "install-system-deps: ERROR: Java not found (${java_bin}). The Kafka 4.x broker needs" \
       "Java 17+: apt-get install -y openjdk-17-jre-headless (or fix JAVA_HOME)." >&2
  status=1
else
  java_major="$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\(\.\([0-9]*\)\)\{0,1\}.*/\1 \3/p' | head -n1 |
                awk '{ print ($1 == 1) ? $2 : $1 }')"
  if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
    echo "install-system-deps: ERROR: $java_bin is Java ${java_major:-?}; Kafka 4.x needs 17+." \
         "Install openjdk-17-jre-headless or point JAVA_HOME at a newer JDK." >&2
    status=1
  else
    echo "install-system-deps: Java $java_major OK ($(command -v "$java_bin"))"
  fi
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "install-system-deps: ERROR: Maven (mvn) not found; it downloads the Kafka jars once." \
       "apt-get install -y maven" >&2
  status=1
else
  echo "install-system-deps: Maven OK ($(command -v mvn))"
fi
if ! id postgres >/dev/null 2>&1; then
  echo "install-system-deps: ERROR: no 'postgres' OS user (the postgresql package creates it)." >&2
  status=1
fi
exit "$status"
