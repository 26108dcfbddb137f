#!/usr/bin/env bash
# Memory after reloads (a measurement, not a test): N catalog registries (default 1 000 000)
# on one template of three replicas, the release binary, five reloads; VmRSS after ready and
# after each reload (settled 3 s), with the trim after a reload on (default) and off
# (STEERDNS_MALLOC_TRIM=0). First, with a region disabled (an incident of every registry),
# the bytes of one status-page refresh: the four reads the page makes.
# Loopback only; only the PIDs started here are stopped.
#
# Usage: benches/reload_memory.sh [N]     (STEERDNS_BIN to pick the binary)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
n=${1:-1000000}
bin=${STEERDNS_BIN:-$repo/target/release/steerdns}
[ -x "$bin" ] || (cd "$repo" && cargo build --release)
work=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-reload.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 - "$n" "$work/registries.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("key,name,template,depends_on,ttl,answers\n")
    for j in range(n):
        f.write(f"r{j},r{j}.registry.example.,fleet,storage-{j % 64:02d};auth,,\n")
PY
port=$((20000 + RANDOM % 20000))
cat > "$work/steerdns.toml" <<TOML
version = 1
[server]
listen = ["127.0.0.1:0"]
zones_dir = "$repo/zones"
[admin]
listen = "127.0.0.1:$port"
state_file = "$work/state.json"
[routing]
default_order = ["westeurope", "eastus", "southeastasia"]
[regions.westeurope]
[regions.eastus]
[regions.southeastasia]
[catalog]
file = "registries.csv"
[templates.fleet]
ttl = "30s"
[templates.fleet.replicas.westeurope]
ipv4 = ["192.0.2.1"]
[templates.fleet.replicas.eastus]
ipv4 = ["192.0.2.2"]
[templates.fleet.replicas.southeastasia]
ipv4 = ["192.0.2.3"]
TOML

rss() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }
echo "N = $n catalog registries; binary $("$bin" --version)"
printf '%-6s %10s' trim ready
for i in 1 2 3 4 5; do printf ' %10s' "reload $i"; done
echo "   (VmRSS, MB)"
for trim in 1 0; do
  STEERDNS_MALLOC_TRIM=$trim RUST_LOG=warn "$bin" --config "$work/steerdns.toml" serve 2>"$work/log" &
  pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.5
  done
  if [ $trim = 1 ]; then
    body='{"region":"eastus","reason":"bench"}'
    curl -sf -X PUT -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/v1/overrides" >/dev/null
    total=0
    for p in "/v1/status?limit=20" "/v1/incidents?recent=10" "/v1/traffic?by=replica" "/v1/events?limit=20"; do
      b=$(curl -sf "http://127.0.0.1:$port$p" | wc -c)
      echo "status page read $p: $b bytes"
      total=$((total + b))
    done
    echo "status page refresh: $total bytes"
    curl -sf -X DELETE -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/v1/overrides" >/dev/null
  fi
  printf '%-6s %10s' "$([ $trim = 1 ] && echo on || echo off)" "$(rss $pid)"
  for i in 1 2 3 4 5; do
    curl -sf -X POST "http://127.0.0.1:$port/v1/reload" >/dev/null
    sleep 3
    printf ' %10s' "$(rss $pid)"
  done
  echo
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
