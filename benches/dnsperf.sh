#!/usr/bin/env bash
# Benchmark: steerdns (release build) against Knot as the baseline, in the same run, with
# dnsperf on loopback. dnsperf is pinned to core 0 and each server to core 1 (taskset), so
# the comparable figure is the server's CPU time (user + sys, from /proc) per answered query
# at a saturating load; QPS and lost queries are reported with it.
#
# Usage: benches/dnsperf.sh [SECONDS] [MIX...]
#   SECONDS  length of each dnsperf run (default 10)
#   MIX      which query mixes to run: static nx global global-ecs global-100k (default: all)
# Needs: dnsperf, knot (apt-get install dnsperf knot), dig. Everything listens on 127.0.4.x.
# STEERDNS_BIN=PATH measures that binary instead of building target/release/steerdns (to
# compare two builds in one session).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
mixes=("$@")
[ ${#mixes[@]} -gt 0 ] || mixes=(static nx global global-ecs global-100k)

for tool in dnsperf knotd dig taskset; do
  command -v "$tool" >/dev/null || { echo "benches/dnsperf.sh: $tool is missing (apt-get install dnsperf knot dnsutils)" >&2; exit 1; }
done
if [ -n "${STEERDNS_BIN:-}" ]; then bin=$STEERDNS_BIN; else cargo build --release -q; bin=./target/release/steerdns; fi
work=$(mktemp -d /tmp/steerdns-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

sd_addr=127.0.4.2
knot_addr=127.0.4.1
port=5300
zone_file=$(pwd)/zones/registry.example.zone

# steerdns on the repository's default config, bound to its own address.
taskset -c 1 "$bin" serve --config steerdns.toml --listen "$sd_addr:$port" --admin-listen "$sd_addr:0" 2>"$work/steerdns.log" &
pids+=($!); sd_pid=$!

# A second steerdns with 100 000 registries x 3 replicas: the global-name cost must not grow
# with the number of registries.
big_addr=127.0.4.3
awk -v zones="$(pwd)/zones" -v geo="$(pwd)/geo" -v state="$work/big-state.json" -v addr="$big_addr" 'BEGIN {
  printf "version = 1\n[server]\nlisten = [\"%s:5300\"]\nzones_dir = \"%s\"\ngeo_dir = \"%s\"\n", addr, zones, geo
  printf "[admin]\nlisten = \"%s:8053\"\nstate_file = \"%s\"\n", addr, state
  printf "[routing]\nlatency_table = \"latency.csv\"\ndefault_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n"
  printf "[regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n"
  for (i = 0; i < 100000; i++) {
    printf "[registries.r%d]\nname = \"r%d.registry.example.\"\n", i, i
    printf "[registries.r%d.replicas.westeurope]\nipv4 = [\"192.0.2.10\"]\n", i
    printf "[registries.r%d.replicas.eastus]\nipv4 = [\"198.51.100.10\"]\n", i
    printf "[registries.r%d.replicas.southeastasia]\nipv4 = [\"203.0.113.10\"]\n", i
  }
}' >"$work/big.toml"
taskset -c 1 "$bin" serve --config "$work/big.toml" 2>"$work/big.log" &
pids+=($!); big_pid=$!

# Knot serving the same zone file.
mkdir -p "$work/knot"
cat >"$work/knot.conf" <<EOF
server:
    listen: $knot_addr@$port
    rundir: $work/knot
    user: root:root
log:
  - target: stderr
    any: error
database:
    storage: $work/knot
zone:
  - domain: registry.example
    file: $zone_file
    journal-content: none
    zonefile-sync: -1
EOF
taskset -c 1 knotd -c "$work/knot.conf" 2>"$work/knot.log" &
pids+=($!); knot_pid=$!

wait_ready() {
  for _ in $(seq 100); do
    dig +time=1 +tries=1 @"$1" -p "$port" www.registry.example A 2>/dev/null | grep -q "status: NOERROR" && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2; exit 1
}
wait_ready "$sd_addr"; wait_ready "$knot_addr"; wait_ready "$big_addr"
# knotd starts worker threads after the first pinning; pin every thread of both servers.
taskset -a -p -c 1 "$knot_pid" >/dev/null
taskset -a -p -c 1 "$sd_pid" >/dev/null
taskset -a -p -c 1 "$big_pid" >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

printf 'www.registry.example A\nmail.registry.example A\nregistry.example SOA\napi.registry.example A\nwww.registry.example AAAA\n' >"$work/static.txt"
printf 'nope%s.registry.example A\n' $(seq 1 50) >"$work/nx.txt"
printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n' >"$work/global.txt"
printf 'r%s.registry.example A\n' 0 31337 65535 99999 >"$work/global-100k.txt"

# run NAME ADDR PID FILE [dnsperf args...]: prints "qps lost cpu_us_per_query"
run() {
  local addr=$2 pid=$3 file=$4; shift 4
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 0 dnsperf -s "$addr" -p "$port" -d "$file" -l "$secs" -c 1 -q 200 -t 2 "$@" 2>&1)
  after=$(cpu_ticks "$pid")
  local completed lost qps
  completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  awk -v c="$completed" -v b="$before" -v a="$after" -v t="$tck" -v q="$qps" -v l="$lost" \
    'BEGIN { printf "%10.0f %8d %8.2f\n", q, l, (a - b) / t * 1e6 / (c > 0 ? c : 1) }'
}

printf '%-22s %-8s %10s %8s %8s\n' mix server qps lost "cpu_us/q"
for mix in "${mixes[@]}"; do
  case $mix in
    static|nx)
      s=$(run steerdns "$sd_addr" "$sd_pid" "$work/$mix.txt")
      k=$(run knot "$knot_addr" "$knot_pid" "$work/$mix.txt")
      printf '%-22s %-8s %s\n' "$mix" steerdns "$s"
      printf '%-22s %-8s %s\n' "$mix" knot "$k"
      awk -v s="$(awk '{print $3}' <<<"$s")" -v k="$(awk '{print $3}' <<<"$k")" -v m="$mix" \
        'BEGIN { printf "%-22s ratio steerdns/knot cpu per query: %.2f\n", m, s / k }'
      ;;
    global)
      s=$(run steerdns "$sd_addr" "$sd_pid" "$work/global.txt")
      printf '%-22s %-8s %s\n' "$mix" steerdns "$s"
      ;;
    global-ecs)
      # ECS option 8: family 1, source /24, scope 0, 192.0.2.0
      s=$(run steerdns "$sd_addr" "$sd_pid" "$work/global.txt" -E 8:00011800c00002)
      k=$(run knot "$knot_addr" "$knot_pid" "$work/static.txt")
      printf '%-22s %-8s %s\n' "$mix" steerdns "$s"
      # The Knot run the ratio divides by (static zone data, measured again for this mix).
      printf '%-22s %-8s %s\n' "$mix" knot "$k"
      awk -v s="$(awk '{print $3}' <<<"$s")" -v k="$(awk '{print $3}' <<<"$k")" \
        'BEGIN { printf "%-22s ratio steerdns global+ECS / knot static cpu per query: %.2f\n", "global-ecs", s / k }'
      ;;
    global-100k)
      # The same ECS query against the 100 000-registry server, next to the 1-registry one.
      s=$(run steerdns "$sd_addr" "$sd_pid" "$work/global.txt" -E 8:00011800c00002)
      b=$(run steerdns-100k "$big_addr" "$big_pid" "$work/global-100k.txt" -E 8:00011800c00002)
      printf '%-22s %-8s %s\n' "$mix" "1 reg" "$s"
      printf '%-22s %-8s %s\n' "$mix" "100k reg" "$b"
      awk -v s="$(awk '{print $3}' <<<"$s")" -v b="$(awk '{print $3}' <<<"$b")" \
        'BEGIN { printf "%-22s ratio 100k/1 registries cpu per query: %.2f\n", "global-100k", b / s }'
      ;;
    *) echo "unknown mix $mix" >&2; exit 2 ;;
  esac
done
