#!/usr/bin/env bash
# Builds the worker and operator images from this checkout's release binaries:
#   rivulet/worker:VERSION and rivulet/operator:VERSION (the chart's defaults).
#
# BASE picks the base image (default debian:bookworm-slim). When that image is not present
# and cannot be pulled (no registry reachable), a Debian bookworm base is made here with
# debootstrap and `docker import`ed as rivulet-base:bookworm. Starts dockerd when no daemon
# answers. Needs the binaries built first (`make build`); `make images` does both.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/rivulet/target}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
BASE="${BASE:-debian:bookworm-slim}"
LOCAL_BASE="rivulet-base:bookworm"
say() { printf 'images: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- a Docker daemon ----------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  say "installing docker.io and debootstrap"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: /tmp/rivulet-dockerd.log)"
  as_root sh -c 'nohup dockerd >/tmp/rivulet-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { say "dockerd did not start; see /tmp/rivulet-dockerd.log" >&2; exit 1; }
fi

# --- the base image -----------------------------------------------------------------------
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if [ "$BASE" = "debian:bookworm-slim" ] && timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
    say "pulled $BASE"
  elif [ "$BASE" = "debian:bookworm-slim" ]; then
    if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
      say "no registry: making $LOCAL_BASE with debootstrap (about a minute)"
      root="$(mktemp -d)"
      as_root debootstrap --variant=minbase \
        --include=ca-certificates,libssl3,libsasl2-2,zlib1g,libstdc++6 \
        bookworm "$root" http://deb.debian.org/debian >/dev/null
      as_root tar -C "$root" -c . | docker import - "$LOCAL_BASE" >/dev/null
      as_root rm -rf "$root"
    fi
    BASE="$LOCAL_BASE"
  else
    say "base image $BASE is not present" >&2
    exit 1
  fi
fi

# --- the images -----------------------------------------------------------------------------
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
for component in worker operator; do
  bin="$TARGET/release/rivulet-$component"
  [ -x "$bin" ] || { say "$bin is missing: run make build first" >&2; exit 1; }
  rm -f "$context"/rivulet-*
  # The release profile keeps debug info for profiling; the image does not need it.
  strip --strip-debug -o "$context/rivulet-$component" "$bin"
  say "building rivulet/$component:$VERSION on $BASE"
  docker build --quiet --network host \
    --build-arg "BASE=$BASE" \
    -f "docker/$component.Dockerfile" \
    -t "rivulet/$component:$VERSION" "$context" >/dev/null
done
say "built rivulet/worker:$VERSION and rivulet/operator:$VERSION"
