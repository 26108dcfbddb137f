#!/usr/bin/env bash
# Instructions per answered query for the WHOLE server process (every thread, user space:
# parsing, answering, the batch loop, the runtime, the prober's share of the window), counted
# by callgrind, for steerdns, gdnsd, Knot or the floor on the same query file: a figure that
# machine noise cannot move. Hardware counters (`perf stat -e instructions`) are not
# available on this VM ("<not supported>"), so callgrind it is; kernel instructions (the
# system calls themselves) are not counted by either tool here.
#
# The server starts under callgrind with instrumentation off; after a warm-up it is switched
# on (callgrind_control -i on), dnsperf sends the queries, the counts are dumped
# (callgrind_control -d) and their total is divided by the queries answered.
#
# Usage: benches/instructions-process.sh SERVER [QUERIES] [MIX]
#   SERVER   steerdns | gdnsd | knot | floor
#   QUERIES  about how many queries to send (default 20000)
#   MIX      mix (default: 80 % global name A/AAAA, a static name, NXDOMAIN; no EDNS) or
#            mix-ecs (the same with EDNS + ECS /24 from three client networks), the query
#            files of benches/dnsperf.sh
# RATE=N sends the counted queries at N per second (dnsperf -Q) instead of 20 in flight: a
# server under callgrind then keeps up, so it reads one datagram per system call, the shape
# of the fixed-load (latency) regime of benches/dnsperf.sh, where per-batch costs are paid
# per query. STEERDNS_BIN=PATH measures that steerdns binary (default target/release/steerdns, built
# when missing). Listens on 127.0.4.4x (and the demo replicas on 127.0.4.21-23, like
# benches/dnsperf.sh: run one of the two at a time); stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?usage: benches/instructions-process.sh steerdns|gdnsd|knot|floor [QUERIES] [mix|mix-ecs]}
n=${2:-20000}
mix=${3:-mix}
bin=${STEERDNS_BIN:-target/release/steerdns}
[ -x "$bin" ] || cargo build --release -q
for tool in valgrind callgrind_control callgrind_annotate dnsperf dig gcc python3; do
  command -v "$tool" >/dev/null || { echo "benches/instructions-process.sh: $tool is missing" >&2; exit 1; }
done
work=$(mktemp -d /tmp/steerdns-iproc.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
addr=127.0.4.41
port=5300
zone_file=$(pwd)/zones/registry.example.zone

# The demo replicas, for the servers that probe them (as in benches/dnsperf.sh).
sed -e 's/127\.0\.10\.\([0-9]\)/127.0.4.2\1/g' \
  -e "s#^zones_dir = .*#zones_dir = \"$(pwd)/zones\"#" -e "s#^geo_dir = .*#geo_dir = \"$(pwd)/geo\"#" \
  steerdns.toml >"$work/steerdns.toml"
sed -e "s/^listen = \[.*/listen = [\"127.0.4.40:$port\"]/" -e 's/^listen = "127.0.0.1:8053"/listen = "127.0.4.40:0"/' \
  -e "s#^\[admin\]#[admin]\nstate_file = \"$work/replicas-state.json\"#" \
  "$work/steerdns.toml" >"$work/replicas.toml"
sed -i "s#^\[admin\]#[admin]\nstate_file = \"$work/steerdns-state.json\"#" "$work/steerdns.toml"
if [ "$server" = steerdns ] || [ "$server" = gdnsd ]; then
  "$bin" demo --config "$work/replicas.toml" >"$work/replicas.log" 2>&1 &
  pids+=($!)
fi

cg=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out")
case $server in
  steerdns)
    "${cg[@]}" "$bin" serve --config "$work/steerdns.toml" --listen "$addr:$port" --admin-listen "$addr:0" 2>"$work/log" &
    ;;
  gdnsd)
    bash benches/gdnsd-config.sh "$work/gdnsd" "$addr" "$port" "$zone_file" geo/latency.csv
    "${cg[@]}" gdnsd -c "$work/gdnsd" start 2>"$work/log" &
    ;;
  knot)
    mkdir -p "$work/knot"
    { cat "$zone_file"; printf 'contoso 5 A 192.0.2.10\ncontoso 5 AAAA 2001:db8::10\n'; } >"$work/knot/registry.example.zone"
    printf 'server:\n    listen: %s@%s\n    rundir: %s\n    user: root:root\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\ndatabase:\n    storage: %s\nzone:\n  - domain: registry.example\n    file: %s\n    journal-content: none\n    zonefile-sync: -1\n' \
      "$addr" "$port" "$work/knot" "$work/knot" "$work/knot/registry.example.zone" >"$work/knot.conf"
    "${cg[@]}" knotd -c "$work/knot.conf" 2>"$work/log" &
    ;;
  floor)
    gcc -O2 -o "$work/reflector" benches/floor/reflector.c
    "${cg[@]}" "$work/reflector" "$addr" "$port" 2>"$work/log" &
    ;;
  *) echo "benches/instructions-process.sh: SERVER is steerdns, gdnsd, knot or floor" >&2; exit 2 ;;
esac
pid=$!
pids+=("$pid")
for _ in $(seq 1 600); do
  dig +short +time=1 +tries=1 @"$addr" -p "$port" www.registry.example A >/dev/null 2>&1 && break
  sleep 0.5
done

{ for _ in 1 2 3 4; do printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n'; done
  printf 'www.registry.example A\nnope.registry.example A\n'; } >"$work/mix.txt"
python3 benches/ecs_queries.py "$work/mix-ecs.bin"
case $mix in
  mix) file=(-d "$work/mix.txt") per=10 ;;
  mix-ecs) file=(-d "$work/mix-ecs.bin" -B) per=300 ;;
  *) echo "benches/instructions-process.sh: MIX is mix or mix-ecs" >&2; exit 2 ;;
esac
# Warm-up (first probes, caches, lazily built state), then the counted window.
dnsperf -s "$addr" -p "$port" "${file[@]}" -n 20 -c 1 -q 20 -t 5 >/dev/null 2>&1 || true
sleep 3
callgrind_control -i on "$pid" >/dev/null 2>&1
rate=()
[ -n "${RATE:-}" ] && rate=(-Q "$RATE")
done_q=$(dnsperf -s "$addr" -p "$port" "${file[@]}" -n $(((n + per - 1) / per)) -c 1 -q 20 -t 5 "${rate[@]}" 2>&1 |
  awk '/Queries completed:/ {print $3}')
callgrind_control -d "$pid" >/dev/null 2>&1
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
dump=$(ls "$work"/cg.out.* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
awk -v t="$total" -v q="$done_q" -v s="$server" -v m="$mix" \
  -v r="${RATE:-unpaced}" 'BEGIN { printf "%s, query file %s, rate %s: %d queries answered, %.0f instructions per query (whole process, user space)\n", s, m, r, q, t / q }'
