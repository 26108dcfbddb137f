#!/usr/bin/env bash
# Instructions executed inside dns::handle per answered query, counted by callgrind: a figure
# that machine noise cannot move (dnsperf's CPU times move by ±15-25 % on this VM).
#
# Usage: benches/instructions.sh [BIN] [QUERIES] [MIX]
#   BIN      the steerdns binary (default target/release/steerdns, built when missing)
#   QUERIES  how many queries to send (default 10000)
#   MIX      global (default: the global name, A and AAAA, with ECS /24), static (zone data,
#            A and AAAA, no ECS) or nxdomain (names that do not exist, no ECS)
# Needs: valgrind, dnsperf, dig. Listens on 127.0.4.9 only; stops only the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/steerdns}
n=${2:-10000}
mix=${3:-global}
[ -x "$bin" ] || cargo build --release -q
for tool in valgrind callgrind_annotate dnsperf dig; do
  command -v "$tool" >/dev/null || { echo "benches/instructions.sh: $tool is missing" >&2; exit 1; }
done
work=$(mktemp -d /tmp/steerdns-instr.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --toggle-collect='steerdns::dns::handle*' \
  "$bin" serve --config steerdns.toml --listen 127.0.4.9:5300 --admin-listen 127.0.4.9:0 2>"$work/log" &
pid=$!
for _ in $(seq 1 240); do
  dig +short +time=1 +tries=1 @127.0.4.9 -p 5300 www.registry.example A >/dev/null 2>&1 && break
  sleep 0.5
done
ecs=()
case "$mix" in
  global)
    printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n' >"$work/q.txt"
    # ECS option 8: family 1, source /24, scope 0, 192.0.2.0
    ecs=(-E 8:00011800c00002) ;;
  static) printf 'www.registry.example A\nwww.registry.example AAAA\n' >"$work/q.txt" ;;
  nxdomain) printf 'nope.registry.example A\nnada.registry.example AAAA\n' >"$work/q.txt" ;;
  *) echo "benches/instructions.sh: MIX is global, static or nxdomain" >&2; exit 2 ;;
esac
done_q=$(dnsperf -s 127.0.4.9 -p 5300 -d "$work/q.txt" -n $((n / 2)) -c 1 -q 20 -t 5 \
  "${ecs[@]}" 2>&1 | awk '/Queries completed:/ {print $3}')
kill -INT "$pid"; wait "$pid" || true; pid=
# The warm-up dig queries are counted too: a few hundred instructions each, noise at n=10000.
total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
awk -v t="$total" -v q="$done_q" -v b="$bin" -v m="$mix" \
  'BEGIN { printf "%s: %s mix, %d queries answered, %.0f instructions per query in dns::handle\n", b, m, q, t / q }'
