#!/usr/bin/env bash
# Benchmark: what the DO bit costs. One steerdns (release build) serving the demo zone signed
# with a key made here, and Knot signing the same zone (automatic signing, ECDSA P-256, the
# global name as static records), in the same run, with dnsperf on loopback. dnsperf is
# pinned to core 0 and each server to core 1, so the comparable figure is the server's CPU
# time (user + sys, from /proc) per answered query. For each mix, steerdns is measured with
# EDNS and no DO (unsigned answers), then with DO (signed answers), and the ratio of the two
# is printed: the issue's target is DO ≤ 1.3× unsigned. Knot with DO is printed beside.
#
# Mixes: global (the steered name, A and AAAA: signatures from the cache), static (zone
# names: signed answers prepared at load), mix (80 % global, a static name, a name that does
# not exist: compact denial).
#
# Usage: benches/dnssec.sh [SECONDS] (default 10). STEERDNS_BIN=PATH measures that binary.
# Needs dnsperf, knotd, keymgr (knot), dig. Listens on 127.0.4.7 (steerdns), 127.0.4.8 (Knot).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
for tool in dnsperf knotd keymgr dig taskset; do
  command -v "$tool" >/dev/null || { echo "benches/dnssec.sh: $tool is missing" >&2; exit 1; }
done
if [ -n "${STEERDNS_BIN:-}" ]; then bin=$STEERDNS_BIN; else cargo build --release -q; bin=./target/release/steerdns; fi
work=$(mktemp -d /tmp/steerdns-dnssec-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
sd=127.0.4.7
knot=127.0.4.8
port=5300

"$bin" dnssec keygen registry.example --dir "$work/keys" >/dev/null
cat >"$work/steerdns.toml" <<CONF
version = 1
[server]
listen = ["$sd:$port"]
zones_dir = "$(pwd)/zones"
geo_dir = "$(pwd)/geo"
[admin]
listen = "$sd:0"
state_file = "$work/state.json"
[routing]
latency_table = "latency.csv"
default_order = ["westeurope", "eastus", "southeastasia"]
[regions.westeurope]
[regions.eastus]
[regions.southeastasia]
[registries.contoso]
name = "contoso.registry.example."
ttl = "5s"
[registries.contoso.replicas.westeurope]
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8::10"]
[registries.contoso.replicas.eastus]
ipv4 = ["198.51.100.10"]
ipv6 = ["2001:db8:1::10"]
[registries.contoso.replicas.southeastasia]
ipv4 = ["203.0.113.10"]
ipv6 = ["2001:db8:2::10"]
[dnssec]
zones = ["registry.example."]
key_dir = "$work/keys"
CONF
taskset -c 1 "$bin" serve --config "$work/steerdns.toml" 2>"$work/steerdns.log" &
pids+=($!); sd_pid=$!

mkdir -p "$work/knot"
{ cat zones/registry.example.zone
  printf 'contoso 5 A 192.0.2.10\ncontoso 5 AAAA 2001:db8::10\n'
} >"$work/knot/registry.example.zone"
cat >"$work/knot.conf" <<CONF
server:
    listen: $knot@$port
    rundir: $work/knot
    user: root:root
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: error
database:
    storage: $work/knot
policy:
  - id: ecdsa
    algorithm: ecdsap256sha256
    single-type-signing: on
zone:
  - domain: registry.example
    file: $work/knot/registry.example.zone
    journal-content: none
    zonefile-sync: -1
    dnssec-signing: on
    dnssec-policy: ecdsa
CONF
taskset -c 1 knotd -c "$work/knot.conf" 2>"$work/knot.log" &
pids+=($!); knot_pid=$!

for a in $sd $knot; do
  for _ in $(seq 300); do
    dig +dnssec +time=1 +tries=1 @"$a" -p "$port" www.registry.example A 2>/dev/null | grep -q "RRSIG" && break
    sleep 0.1
  done
done
for p in "$sd_pid" "$knot_pid"; do taskset -a -p -c 1 "$p" >/dev/null; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
run() {
  local addr=$1 pid=$2 file=$3; shift 3
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 0 dnsperf -s "$addr" -p "$port" -d "$file" -l "$secs" -c 1 -q 200 -t 2 "$@" 2>&1)
  after=$(cpu_ticks "$pid")
  awk -v c="$(awk '/Queries completed:/ {print $3}' <<<"$out")" -v b="$before" -v a="$after" -v t="$tck" \
    -v q="$(awk '/Queries per second:/ {print $4}' <<<"$out")" -v l="$(awk '/Queries lost:/ {print $3}' <<<"$out")" \
    'BEGIN { printf "%10.0f %8d %8.2f\n", q, l, (a - b) / t * 1e6 / (c > 0 ? c : 1) }'
}

printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n' >"$work/global.txt"
printf 'www.registry.example A\nmail.registry.example A\nregistry.example SOA\nwww.registry.example AAAA\nregistry.example DNSKEY\n' >"$work/static.txt"
{ for _ in 1 2 3 4; do printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n'; done
  printf 'www.registry.example A\nnope.registry.example A\n'; } >"$work/mix.txt"

printf '%-8s %-22s %10s %8s %8s\n' mix server qps lost "cpu_us/q"
for mix in global static mix; do
  u=$(run "$sd" "$sd_pid" "$work/$mix.txt" -e)
  d=$(run "$sd" "$sd_pid" "$work/$mix.txt" -D)
  k=$(run "$knot" "$knot_pid" "$work/$mix.txt" -D)
  printf '%-8s %-22s %s\n' "$mix" "steerdns EDNS, no DO" "$u"
  printf '%-8s %-22s %s\n' "$mix" "steerdns DO (signed)" "$d"
  printf '%-8s %-22s %s\n' "$mix" "knot DO (signed)" "$k"
  awk -v u="$(awk '{print $3}' <<<"$u")" -v d="$(awk '{print $3}' <<<"$d")" -v k="$(awk '{print $3}' <<<"$k")" -v m="$mix" \
    'BEGIN { printf "%-8s ratio steerdns DO / no DO: %.2f   steerdns DO / knot DO: %.2f\n", m, d / u, d / k }'
done
