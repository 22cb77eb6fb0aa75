#!/usr/bin/env bash
# Installs what `make bench-flink` needs beyond `make setup`: Java 17 (apt, when no Java 17
# is found) and PyPI apache-flink in its own virtualenv, so Flink's many Python
# dependencies stay out of the interpreter the tests use. Prints the virtualenv's python
# on its last line. Idempotent: takes a second when everything is there.
set -euo pipefail

FLINK="apache-flink==2.3.0"
VENV="${RIVULET_FLINK_VENV:-$HOME/.cache/rivulet/flink-venv}"

say() { printf 'setup-flink: %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    say "need root to run: $*  (no sudo found)"; exit 1
  fi
}

java17() {
  for d in /usr/lib/jvm/java-17-openjdk-*; do
    [ -x "$d/bin/java" ] && { echo "$d"; return 0; }
  done
  return 1
}
if ! java_home="$(java17)"; then
  say "installing Java 17 (openjdk-17-jre-headless)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless
  java_home="$(java17)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating a virtualenv for Flink in $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("apache-flink") != sys.argv[1])' "${FLINK#*==}" 2>/dev/null; then
  say "installing $FLINK (a few hundred MB)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$FLINK"
fi
say "Java 17: $java_home; Flink: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-flink"))')"
echo "$VENV/bin/python"
