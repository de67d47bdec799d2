#!/usr/bin/env bash
# Makes this checkout ready to run: Debian's postgresql and redis-server when absent (as root, or
# with sudo), then a .venv with the project and its dev extra. Safe to run again: it redoes only
# what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The Debian package of a command, where the names differ. promtool (the tests check the alert
# rules with it) comes with Debian's prometheus package; on a machine that runs systemd, that
# package also enables a Prometheus service of its own. `ip` (network namespaces) and haproxy
# serve the multi-host tier.
package_of() {
  case "$1" in
    promtool) echo prometheus ;;
    ip) echo iproute2 ;;
    *) echo "$1" ;;
  esac
}
want_checkov=""
for tool in "$@"; do  # extra commands a caller asks for, such as wrk for the benchmark
  if [ "$tool" = checkov ]; then want_checkov=1; continue; fi  # from PyPI, below
  command -v "$tool" >/dev/null 2>&1 || missing+=("$(package_of "$tool")")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.portico-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing the project and its dev extra into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# checkov (tests/deploy/ runs it over the Kubernetes manifests and the Containerfile) gets a
# virtual environment of its own, .venv/tools/checkov: its pins (packaging<24 among them)
# cannot live with the dev extra's pytest in one environment.
checkov_pin='checkov>=3.2,<4'
checkov_venv=.venv/tools/checkov
if [ -n "$want_checkov" ] && { [ ! -x "$checkov_venv/bin/checkov" ] ||
     [ "$(cat "$checkov_venv/.pin" 2>/dev/null)" != "$checkov_pin" ]; }; then
  echo "bootstrap: installing $checkov_pin into $checkov_venv"
  "$python" -m venv "$checkov_venv"
  "$checkov_venv/bin/python" -m pip install -q "$checkov_pin"
  echo "$checkov_pin" > "$checkov_venv/.pin"
fi
