#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and debootstrap where
# they are missing (needs root and apt), and starts dockerd (overlay2) when none runs.
# Prints the PID of a dockerd it started (empty when one was already running), so the
# caller stops only what it started: kill "$(scripts/docker_engine.sh)".
set -euo pipefail
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    echo "installing docker.io and debootstrap..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >&2; }
fi
if docker info >/dev/null 2>&1; then
    exit 0
fi
log="${TMPDIR:-/tmp}/dockerd.log"
nohup dockerd --storage-driver overlay2 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "$pid"
        exit 0
    fi
    sleep 1
done
echo "dockerd did not start in 60 s; its log ($log):" >&2
tail -20 "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
