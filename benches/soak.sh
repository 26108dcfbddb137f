#!/usr/bin/env bash
# Soak: `steerdns demo` (release build) under a steady dnsperf load for a long time while a
# replica flaps, an override toggles and the config is reloaded every 30 s. Not a test: it
# reports figures to judge by (issue 12 item 7).
#
# Usage: benches/soak.sh [SECONDS] [LOAD]
#   SECONDS  how long (default 600)
#   LOAD     the "configured" load in queries/s; the soak sends twice that (default 5000)
#
# Schedule, in 60 s cycles (each phase 20 s):
#   0-20 s   everything healthy
#   20-40 s  westeurope's storage fails for contoso (deep health says so; its front door is fine)
#   40-60 s  westeurope recovered; eastus disabled for contoso by an operator override
# A checker asks every 0.5 s as a client near westeurope (127.0.1.1) and one near eastus
# (127.0.2.1). Once a phase is 12 s old (detection: 3 failed probes at 2 s, jitter, recovery
# after 2 passes), each answer must be the replica the schedule implies; earlier answers are
# only checked to be one of the replicas.
#
# Reports: dnsperf's sent/completed/lost, RSS after warm-up and at the end, the warnings and
# errors the server logged, and the checker's right/wrong/in-transition counts.
# Needs: dnsperf, dig, curl. Listens where steerdns.toml says (127.0.0.1:5300, admin :8053,
# demo replicas 127.0.10.1-3:8080); stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
load=${2:-5000}
rate=$((load * 2))
for tool in dnsperf dig curl; do
  command -v "$tool" >/dev/null || { echo "benches/soak.sh: $tool is missing" >&2; exit 1; }
done
cargo build --release -q
bin=./target/release/steerdns
work=$(mktemp -d /tmp/steerdns-soak.XXXXXX)
pid=
perf=
cleanup() {
  [ -n "$perf" ] && kill "$perf" 2>/dev/null
  [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The demo config with its own state file, so the overrides the soak toggles never land in
# the repository's steerdns-state.json (they persist, as operator state should).
repo=$(pwd)
sed -e "s|^zones_dir = \"zones\"|zones_dir = \"$repo/zones\"|" \
    -e "s|^geo_dir = \"geo\"|geo_dir = \"$repo/geo\"|" \
    -e "s|^\[admin\]|[admin]\nstate_file = \"$work/state.json\"|" steerdns.toml >"$work/steerdns.toml"
grep -q "state_file = \"$work/state.json\"" "$work/steerdns.toml" || { echo "benches/soak.sh: could not set the state file" >&2; exit 1; }
"$bin" demo --config "$work/steerdns.toml" >"$work/stdout" 2>"$work/log" &
pid=$!
for _ in $(seq 1 120); do
  dig +short +time=1 +tries=1 @127.0.0.1 -p 5300 www.registry.example A >/dev/null 2>&1 && break
  sleep 0.5
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

WEU=192.0.2.10 EUS=198.51.100.10 SEA=203.0.113.10
printf 'contoso.registry.example A\nfabrikam.registry.example AAAA\nwww.registry.example A\nnope.registry.example A\n' >"$work/q.txt"
taskset -c 0 dnsperf -s 127.0.0.1 -p 5300 -d "$work/q.txt" -l "$secs" -Q "$rate" -c 4 -q 200 -t 2 \
  >"$work/dnsperf" 2>&1 &
perf=$!
sleep 10
rss_start=$(rss)

right=0 wrong=0 transition=0 wrongs=()
start=$(date +%s)
last_reload=$start
phase_seen=-1
series=()
last_sample=$start
while :; do
  now=$(date +%s)
  t=$((now - start))
  [ "$t" -ge "$secs" ] && break
  in_cycle=$((t % 60))
  phase=$((in_cycle / 20))
  age=$((in_cycle % 20))
  if [ "$phase" != "$phase_seen" ]; then
    case $phase in
      0) curl -s -X POST http://127.0.10.1:8080/recover >/dev/null
         "$bin" replica enable contoso eastus >/dev/null 2>&1 || true ;;
      1) curl -s -X POST 'http://127.0.10.1:8080/fail?dep=storage&registry=contoso' >/dev/null ;;
      2) curl -s -X POST http://127.0.10.1:8080/recover >/dev/null
         "$bin" replica disable contoso eastus --reason soak >/dev/null ;;
    esac
    phase_seen=$phase
  fi
  if [ $((now - last_sample)) -ge 60 ]; then
    series+=("$(rss)")
    last_sample=$now
  fi
  if [ $((now - last_reload)) -ge 30 ]; then
    kill -HUP "$pid"
    last_reload=$now
  fi
  # Expected answers per phase: near westeurope, near eastus.
  case $phase in
    0) want=("$WEU" "$EUS") ;;
    1) want=("$EUS" "$EUS") ;;
    2) want=("$WEU" "$WEU") ;;
  esac
  i=0
  for client in 127.0.1.1 127.0.2.1; do
    got=$(dig +short +time=1 +tries=1 -b "$client" @127.0.0.1 -p 5300 contoso.registry.example A | head -1)
    if [ "$age" -lt 12 ]; then
      case "$got" in "$WEU"|"$EUS"|"$SEA") transition=$((transition + 1)) ;; *) wrong=$((wrong + 1)); wrongs+=("t=$t $client got '$got' (in transition)") ;; esac
    elif [ "$got" = "${want[$i]}" ]; then
      right=$((right + 1))
    else
      wrong=$((wrong + 1))
      wrongs+=("t=$t phase=$phase $client got '$got' want ${want[$i]}")
    fi
    i=$((i + 1))
  done
  sleep 0.5
done
rss_end=$(rss)
wait "$perf" || true
perf=
sent=$(awk '/Queries sent:/ {print $3}' "$work/dnsperf")
done_q=$(awk '/Queries completed:/ {print $3}' "$work/dnsperf")
lost=$(awk '/Queries lost:/ {print $3}' "$work/dnsperf")
kill -INT "$pid"; wait "$pid" || true; pid=
warns=$(grep -c ' WARN ' "$work/log" || true)
errors=$(grep -c ' ERROR ' "$work/log" || true)
echo "soak: ${secs} s at ${rate} queries/s (2 x ${load}), reload every 30 s, 60 s flap/override cycle"
echo "dnsperf: sent ${sent}, completed ${done_q}, lost ${lost}"
awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { printf "RSS: %d kB after warm-up, %d kB at the end (%+.1f %%)\n", a, b, (b - a) * 100 / a }'
echo "RSS every 60 s (kB): ${series[*]}"
echo "log: ${warns} warnings, ${errors} errors; by message:"
grep -E ' (WARN|ERROR) ' "$work/log" | sed -E 's/^[^ ]+ +//; s/ [a-z_]+=[^ ]+//g' | cut -c1-100 | sort | uniq -c | sort -rn | head -10
echo "checker: ${right} right, ${wrong} wrong, ${transition} in transition (any replica accepted)"
for w in "${wrongs[@]:0:20}"; do echo "  wrong: $w"; done
echo "(log kept in $work)"
