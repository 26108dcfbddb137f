#!/usr/bin/env bash
# Scale benchmark (not a test): N registries with one deep-health document per region,
# real HTTP replicas on loopback, the steerdns release binary, one table of figures.
#
# Usage: benches/scale.sh [--toml] N [REGIONS]
#   N         registries r0 … r{N-1} (rJ.registry.example., depends on storage-{J%64} + auth)
#   REGIONS   replicas per registry, default 3: westeurope, eastus, southeastasia, then
#             northeurope, westus2, japaneast, then the rest of geo/regions.toml
#   --toml    baseline: every registry a [registries.rJ] table (what today's binary reads).
#             Default: the catalog (one [templates.fleet] + registries.csv, runtime changes
#             through PUT/DELETE /v1/registries/KEY).
# Environment:
#   STEERDNS_BIN   the binary (default target/release/steerdns, or $CARGO_TARGET_DIR/release/
#                  steerdns; built with `cargo build --release` when the default is missing)
#   KEEP=1         keep the work directory (configs, server logs, the JSON parts)
#   IDLE_SECONDS   length of the idle-CPU window (default 20)
#   READY_TIMEOUT  seconds to wait for serving + ready (default 120 + N/200)
#   DNSSEC=1       sign the zone ([dnssec] with a key made by `steerdns dnssec keygen`):
#                  time to serving and RSS with DNSSEC on (steered answers are signed when
#                  first asked, so loading signs only the static zone)
#
# What runs: one replica per region on 127.0.20.<i+1>:8080 (benches/scale/replica.py:
# GET /health = {"status":…,"checks":{"storage-00"…"storage-63","auth"}}, 503 when one
# fails; POST /fail?dep=D, POST /recover); steerdns on 127.0.0.1 (free DNS and admin ports).
# Region i answers A 192.0.2.<i+1>; client 127.0.<100+i>.1 is 5 ms from region i and 50+ ms
# from the others. First a 1-registry run (the RSS baseline), then the N-registry run.
# Everything is on loopback; every wait is bounded; only the PIDs started here are stopped.
#
# Figures:
#   generation             time to write config (+ catalog), zone and latency table
#   start -> 'steerdns starting'  process start to the log line printed once the config,
#                          zones and geo data are loaded (and a logged load duration, if
#                          the server logs one: "catalog/config load (logged)")
#   time to serving        process start to the first NOERROR answer with an A record for
#                          r{N-1} (polled every 50 ms)
#   time to ready          process start to GET /ready = 200 (first probe round done)
#   RSS after ready        VmRSS of the server right after ready (peak = VmHWM)
#   RSS at the end         VmRSS and VmHWM after the fault, catalog and reload steps (and
#                          VmRSS right after the fault step, to tell which step grew it)
#   bytes per registry     (RSS - RSS of the 1-registry run) / N
#   CPU, nothing changing  utime+stime over IDLE_SECONDS after ready, % of one core
#   fault -> new answer    storage-07 fails on region 0's replica: time until every sampled
#                          affected registry (J%64 == 7, up to 200) asked from 127.0.100.1
#                          answers another region; bound failure_threshold x interval + 1 s
#   unaffected changed     of up to 2000 sampled registries with J%64 != 7, how many answers
#                          changed (before vs right after, and 2 intervals later): must be 0
#   recovery -> old answer POST /recover to every affected registry back on region 0
#   catalog PUT / DELETE   (catalog mode) medians of 20 x: PUT /v1/registries/new-k, until
#                          it answers; DELETE, until NXDOMAIN
#   reload duration        time of POST /v1/reload, with replica westeurope of r1 disabled
#   disabled replica answered in reload   r1 asked from 127.0.100.1 as fast as one UDP
#                          socket goes while the reload runs and 2 s after (at most 20 000
#                          queries / 10 s): answers carrying 192.0.2.1; must be 0
# The last line is every raw number as one JSON object.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
helpers=$here/scale

usage() { sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "benches/scale.sh: error: $*" >&2; exit 1; }

mode=catalog
pos=()
for arg in "$@"; do
  case $arg in
    --toml) mode=toml ;;
    --catalog) mode=catalog ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) pos+=("$arg") ;;
  esac
done
[ ${#pos[@]} -ge 1 ] && [ ${#pos[@]} -le 2 ] || { usage >&2; exit 2; }
n=${pos[0]}
regions=${pos[1]:-3}
[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "N must be a positive integer, not '$n'"
[[ $regions =~ ^[0-9]+$ ]] && [ "$regions" -ge 2 ] && [ "$regions" -le 64 ] ||
  die "REGIONS must be 2..64, not '$regions'"
idle_seconds=${IDLE_SECONDS:-20}
ready_timeout=${READY_TIMEOUT:-$((120 + n / 200))}
command -v python3 >/dev/null || die "python3 is missing"

# --- the binary -------------------------------------------------------------------------
if [ -n "${STEERDNS_BIN:-}" ]; then
  bin=$STEERDNS_BIN
  [ -x "$bin" ] || die "STEERDNS_BIN=$bin is not an executable"
else
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/steerdns
  if [ ! -x "$bin" ]; then
    echo "benches/scale.sh: $bin is missing; cargo build --release" >&2
    (cd "$repo" && cargo build --release) || die "cargo build --release failed"
  fi
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
version=$("$bin" --version 2>/dev/null | head -1 || echo unknown)

# --- cleanup: only what this script started ------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-scale.XXXXXX")
pids=()
current_log=
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in ${pids[@]+"${pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -n "$current_log" ] && [ -s "$current_log" ]; then
    echo "benches/scale.sh: last lines of $current_log:" >&2
    tail -n 15 "$current_log" >&2
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "benches/scale.sh: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
  local keep=() p
  for p in ${pids[@]+"${pids[@]}"}; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=(${keep[@]+"${keep[@]}"})
}

# Stop one process we started: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  forget_pid "$p"
}

# Run a step in the background and wait for it: a signal then reaches the trap at once
# (bash defers traps until a foreground child ends).
step() {
  local p rc=0
  "$@" &
  p=$!
  pids+=("$p")
  wait "$p" || rc=$?
  forget_pid "$p"
  return "$rc"
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 4))" "$1" "$2"; }
json_get() { python3 -c "import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(' '.join(map(str,v)) if isinstance(v,list) else v)" "$1" "$2"; }

# A port free for both UDP and TCP on 127.0.0.1 (only loopback).
free_port() {
  python3 - <<'EOF'
import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        u.close(); t.close()
    print(port); break
else:
    raise SystemExit("no free port")
EOF
}

# wait_http URL SECONDS PID: until URL answers 200, failing early when PID has exited.
wait_http() {
  local url=$1 secs=$2 pid=$3 t=0
  while ! python3 -c "import sys; sys.path.insert(0, '$helpers'); import admin; sys.exit(0 if admin.http('GET', sys.argv[1], timeout=1)[0] == 200 else 1)" "$url"; do
    kill -0 "$pid" 2>/dev/null || die "the process behind $url (pid $pid) exited"
    t=$((t + 1))
    [ "$t" -le $((secs * 10)) ] || die "$url did not answer 200 within ${secs}s"
    sleep 0.1
  done
}

cpu_ticks() {
  local s
  s=$(<"/proc/$1/stat")
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $((${12} + ${13}))
}
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

generate() { # generate DIR N DNS_PORT ADMIN_PORT
  step python3 "$helpers/gen.py" --out "$1" --n "$2" --regions "$regions" --mode "$mode" \
    --dns-port "$3" --admin-port "$4" \
    --zone "$repo/zones/registry.example.zone" --regions-file "$repo/geo/regions.toml"
  if [ "${DNSSEC:-0}" = 1 ]; then
    "$bin" dnssec keygen registry.example --dir "$1/keys" >/dev/null
    printf '\n[dnssec]\nzones = ["registry.example."]\nkey_dir = "keys"\n' >>"$1/steerdns.toml"
  fi
}

# run_server DIR FULL: start, time to serving/ready, RSS; FULL=1 adds the idle CPU, the
# fault, the catalog changes and the reload. Stops the server at the end.
run_server() {
  local dir=$1 full=$2 t0 spid ppid c1 c2 w1 w2 load0 rss_fault=null
  current_log=$dir/stderr.log
  load0=$(cut -d' ' -f1 /proc/loadavg)
  # The poller is armed first, so that Python's start-up is not part of the figures.
  python3 "$helpers/probe.py" start --facts "$dir/facts.json" --pidfile "$dir/server.pid" \
    --timeout "$ready_timeout" >"$dir/start.json" &
  ppid=$!
  pids+=("$ppid")
  for _ in $(seq 300); do [ -e "$dir/server.pid.armed" ] && break; sleep 0.05; done
  [ -e "$dir/server.pid.armed" ] || die "the start poller did not come up within 15 s"
  t0=$(now)
  "$bin" serve --config "$dir/steerdns.toml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  spid=$!
  pids+=("$spid")
  echo "$spid $t0" >"$dir/server.pid.tmp"
  mv "$dir/server.pid.tmp" "$dir/server.pid"
  wait "$ppid" || die "server not serving and ready (see above)"
  forget_pid "$ppid"
  local rss hwm
  rss=$(proc_kb "$spid" VmRSS)
  hwm=$(proc_kb "$spid" VmHWM)
  local cpu=null
  if [ "$full" = 1 ]; then
    echo "benches/scale.sh: ready; measuring idle CPU for ${idle_seconds}s" >&2
    c1=$(cpu_ticks "$spid"); w1=$(now)
    step sleep "$idle_seconds"
    c2=$(cpu_ticks "$spid"); w2=$(now)
    cpu=$(python3 -c "import sys; t,a,b,w1,w2=map(float,sys.argv[1:]); print(round(100*(b-a)/t/(w2-w1), 2))" \
      "$(getconf CLK_TCK)" "$c1" "$c2" "$w1" "$w2")
    echo "benches/scale.sh: fault on storage-07 (region 0)" >&2
    step python3 "$helpers/probe.py" fault --facts "$dir/facts.json" >"$dir/fault.json"
    rss_fault=$(proc_kb "$spid" VmRSS)
    if [ "$mode" = catalog ]; then
      echo "benches/scale.sh: catalog changes" >&2
      step python3 "$helpers/probe.py" catalog --facts "$dir/facts.json" >"$dir/catalog.json"
    fi
    echo "benches/scale.sh: answers during a reload" >&2
    step python3 "$helpers/probe.py" reload --facts "$dir/facts.json" >"$dir/reload.json"
  fi
  kill -0 "$spid" 2>/dev/null || die "the server exited during the run"
  local rss_end hwm_end
  rss_end=$(proc_kb "$spid" VmRSS)
  hwm_end=$(proc_kb "$spid" VmHWM)
  python3 "$helpers/probe.py" loadlog --log "$dir/stderr.log" --t0 "$t0" >"$dir/loadlog.json"
  stop_pid "$spid"
  current_log=
  printf '{"rss_kb": %s, "hwm_kb": %s, "cpu_pct": %s, "idle_s": %s, "gen_s": %s, "loadavg": [%s, %s], "rss_end_kb": %s, "hwm_end_kb": %s, "rss_after_fault_kb": %s}\n' \
    "$rss" "$hwm" "$cpu" "$idle_seconds" "${gen_s:-null}" "$load0" "$(cut -d' ' -f1 /proc/loadavg)" "$rss_end" "$hwm_end" "$rss_fault" >"$dir/proc.json"
}

echo "benches/scale.sh: N=$n REGIONS=$regions mode=$mode binary=$bin ($version) work=$work" >&2

# --- the 1-registry baseline (and the replicas) -------------------------------------------
gen_s=
generate "$work/base" 1 "$(free_port)" "$(free_port)"
read -r -a region_names <<<"$(json_get "$work/base/facts.json" regions)"
read -r -a health_urls <<<"$(json_get "$work/base/facts.json" replica_health_url)"
for i in "${!region_names[@]}"; do
  python3 "$helpers/replica.py" --listen "127.0.20.$((i + 1)):8080" --region "${region_names[$i]}" \
    2>"$work/replica-$i.log" &
  pids+=($!)
  replica_pids[i]=$!
done
for i in "${!region_names[@]}"; do
  # Our replica bound its address (not some other process answering there), then serves.
  for _ in $(seq 100); do
    grep -q "listening on" "$work/replica-$i.log" && break
    kill -0 "${replica_pids[$i]}" 2>/dev/null ||
      die "replica ${region_names[$i]} did not start: $(tail -n 1 "$work/replica-$i.log")"
    sleep 0.1
  done
  grep -q "listening on" "$work/replica-$i.log" || die "replica ${region_names[$i]} did not bind within 10 s"
  wait_http "${health_urls[$i]%/health}/" 10 "${replica_pids[$i]}"
done
echo "benches/scale.sh: ${#region_names[@]} replicas up; 1-registry baseline run" >&2
run_server "$work/base" 0

# --- the N-registry run ----------------------------------------------------------------------
dns_port=$(free_port)
admin_port=$(free_port)
t=$(now)
generate "$work/main" "$n" "$dns_port" "$admin_port"
gen_s=$(elapsed "$t" "$(now)")
echo "benches/scale.sh: generated N=$n in ${gen_s}s; starting the server" >&2
run_server "$work/main" 1

python3 "$helpers/report.py" --base "$work/base" --main "$work/main" --mode "$mode" --n "$n" \
  --regions "$regions" --bin "$bin" --version "$version"
