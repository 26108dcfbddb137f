#!/usr/bin/env bash
# Benchmark: steerdns (release build) against gdnsd 3.8 (geoip plugin + http_status
# monitoring, the closest peer), Knot (static answers) and the floor (benches/floor: a
# recvmmsg/sendmmsg reflector that copies one pre-built answer), in the same run, with dnsperf
# on loopback. dnsperf is pinned to core 0 and each server to core 1 (taskset), so the
# comparable figure is the server's CPU time (user + sys, from /proc) per answered query;
# QPS and lost queries are reported with it. Every server runs one UDP thread (steerdns's
# udp_workers default is the CPUs it may run on: 1 under taskset -c 1).
#
# Usage: benches/dnsperf.sh [SECONDS] [MIX...]
#   SECONDS  length of each dnsperf run (default 10)
#   MIX      query mixes (default: mix mix-ecs mix-ecs-20k tcp):
#            mix          80 % the global name (A, AAAA), a static name, NXDOMAIN; no EDNS
#            mix-ecs      the same with EDNS + ECS /24 from three client networks
#            mix-ecs-20k  mix-ecs at a fixed 20 000 queries/s (the latency regime)
#            tcp          mix over TCP (steerdns, gdnsd, Knot; no floor)
#            static nx global global-ecs global-100k   steerdns and Knot only, as before
# ROUNDS=N (default 1) runs every mix N times and prints the median of each figure; the
# comparable figures are ROUNDS=3 with SECONDS=10 on a quiet machine.
# Needs the packages in benches/packages.txt (dnsperf, knot, gdnsd, gcc, python3, dig, curl).
# The DO bit (signed answers against the same mixes unsigned, and Knot signing): benches/dnssec.sh.
# Everything listens on 127.0.4.x. STEERDNS_BIN=PATH measures that binary instead of building
# target/release/steerdns (to compare two builds in one session).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
mixes=("$@")
[ ${#mixes[@]} -gt 0 ] || mixes=(mix mix-ecs mix-ecs-20k tcp)
rounds=${ROUNDS:-1}

for tool in dnsperf knotd gdnsd gcc python3 dig curl taskset; do
  command -v "$tool" >/dev/null || { echo "benches/dnsperf.sh: $tool is missing (apt-get install $(grep -v '^#' benches/packages.txt | tr '\n' ' '))" >&2; exit 1; }
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
gdnsd_addr=127.0.4.4
floor_addr=127.0.4.5
big_addr=127.0.4.3
port=5300
zone_file=$(pwd)/zones/registry.example.zone

# The demo replicas (real HTTP deep-health endpoints), probed by steerdns and by gdnsd: the
# repository's config with the replicas moved to 127.0.4.21-23, served by `steerdns demo` on
# an address of its own (its DNS side is not measured).
sed -e 's/127\.0\.10\.\([0-9]\)/127.0.4.2\1/g' \
  -e "s#^zones_dir = .*#zones_dir = \"$(pwd)/zones\"#" -e "s#^geo_dir = .*#geo_dir = \"$(pwd)/geo\"#" \
  steerdns.toml >"$work/steerdns.toml"
sed -e "s/^listen = \[.*/listen = [\"127.0.4.20:$port\"]/" -e 's/^listen = "127.0.0.1:8053"/listen = "127.0.4.20:0"/' \
  -e "s#^\[admin\]#[admin]\nstate_file = \"$work/replicas-state.json\"#" \
  "$work/steerdns.toml" >"$work/replicas.toml"
"$bin" demo --config "$work/replicas.toml" >"$work/replicas.log" 2>&1 &
pids+=($!)

# steerdns on that config, bound to its own address.
sed -i "s#^\[admin\]#[admin]\nstate_file = \"$work/steerdns-state.json\"#" "$work/steerdns.toml"
taskset -c 1 "$bin" serve --config "$work/steerdns.toml" --listen "$sd_addr:$port" --admin-listen "$sd_addr:0" 2>"$work/steerdns.log" &
pids+=($!); sd_pid=$!

# A second steerdns with 100 000 registries x 3 replicas: the global-name cost must not grow
# with the number of registries.
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

# Knot serving the same zone file, plus the global names as static records (what a static
# server answers in their place), one UDP and one TCP worker.
mkdir -p "$work/knot"
{ cat "$zone_file"
  printf 'contoso 5 A 192.0.2.10\ncontoso 5 AAAA 2001:db8::10\nfabrikam 5 A 192.0.2.11\n'
} >"$work/knot/registry.example.zone"
cat >"$work/knot.conf" <<EOF
server:
    listen: $knot_addr@$port
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
zone:
  - domain: registry.example
    file: $work/knot/registry.example.zone
    journal-content: none
    zonefile-sync: -1
EOF
taskset -c 1 knotd -c "$work/knot.conf" 2>"$work/knot.log" &
pids+=($!); knot_pid=$!

# gdnsd with the geoip plugin: a `nets` map equal to the latency table and http_status
# monitoring of the same demo replicas (benches/gdnsd-config.sh says how).
bash benches/gdnsd-config.sh "$work/gdnsd" "$gdnsd_addr" "$port" "$zone_file" geo/latency.csv
taskset -c 1 gdnsd -c "$work/gdnsd" start 2>"$work/gdnsd.log" &
pids+=($!); gdnsd_pid=$!

# The floor.
gcc -O2 -o "$work/reflector" benches/floor/reflector.c
taskset -c 1 "$work/reflector" "$floor_addr" "$port" &
pids+=($!); floor_pid=$!

wait_ready() {
  for _ in $(seq 300); do
    dig +time=1 +tries=1 @"$1" -p "$port" www.registry.example A 2>/dev/null | grep -q "status: NOERROR" && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2; exit 1
}
wait_ready "$sd_addr"; wait_ready "$knot_addr"; wait_ready "$big_addr"; wait_ready "$gdnsd_addr"; wait_ready "$floor_addr"
# knotd starts worker threads after the first pinning; pin every thread of every server.
for p in "$knot_pid" "$sd_pid" "$big_pid" "$gdnsd_pid" "$floor_pid"; do taskset -a -p -c 1 "$p" >/dev/null; done
# The replicas answer their health checks, and both geo servers answer the global name.
for _ in $(seq 100); do
  curl -sf "http://127.0.4.21:8080/health?registry=contoso" >/dev/null 2>&1 &&
    [ -n "$(dig +short +time=1 +tries=1 @"$gdnsd_addr" -p "$port" contoso.registry.example A)" ] && break
  sleep 0.2
done
sleep 3 # the first probe rounds (steerdns every 2 s, gdnsd every 2 s)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

printf 'www.registry.example A\nmail.registry.example A\nregistry.example SOA\napi.registry.example A\nwww.registry.example AAAA\n' >"$work/static.txt"
printf 'nope%s.registry.example A\n' $(seq 1 50) >"$work/nx.txt"
printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n' >"$work/global.txt"
printf 'r%s.registry.example A\n' 0 31337 65535 99999 >"$work/global-100k.txt"
# The issue-11 mix: 80 % the global name, a static name, NXDOMAIN; the ECS variant is in
# dnsperf's binary format (a per-query ECS option, three client networks in turn).
{ for _ in 1 2 3 4; do printf 'contoso.registry.example A\ncontoso.registry.example AAAA\n'; done
  printf 'www.registry.example A\nnope.registry.example A\n'; } >"$work/mix.txt"
python3 benches/ecs_queries.py "$work/mix-ecs.bin"

# run NAME ADDR PID FILE [dnsperf args...]: prints "qps lost cpu_us_per_query"; the CPU
# time is the server process's (all its threads) over the run.
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

# side MIX FILE [dnsperf args...]: every server on one mix, a line each, printed and kept in
# $work/results as "MIX SERVER qps lost cpu_us/q".
side() {
  local mix=$1 file=$2; shift 2
  local s addr pid line
  for s in steerdns gdnsd knot floor; do
    case $s in
      steerdns) addr=$sd_addr pid=$sd_pid ;;
      gdnsd) addr=$gdnsd_addr pid=$gdnsd_pid ;;
      knot) addr=$knot_addr pid=$knot_pid ;;
      floor) addr=$floor_addr pid=$floor_pid ;;
    esac
    [ "$s" = floor ] && [[ " $* " == *" -m tcp "* ]] && continue
    line=$(printf '%-14s %-9s %s' "$mix" "$s" "$(run "$s" "$addr" "$pid" "$file" "$@")")
    echo "$line"
    echo "$line" >>"$work/results"
  done
}

printf '%-22s %-8s %10s %8s %8s\n' mix server qps lost "cpu_us/q"
for ((round = 1; round <= rounds; round++)); do
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
    mix) side mix "$work/mix.txt" ;;
    mix-ecs) side mix-ecs "$work/mix-ecs.bin" -B ;;
    mix-ecs-20k) side mix-ecs-20k "$work/mix-ecs.bin" -B -Q 20000 ;;
    tcp) side tcp "$work/mix.txt" -m tcp ;;
    *) echo "unknown mix $mix" >&2; exit 2 ;;
  esac
done
done

# The side-by-side table: the median over the rounds of each figure, then the ratio of
# steerdns to the best peer (gdnsd or Knot, whichever used less CPU per query) and to the
# floor, both computed from the medians printed above them.
[ -s "$work/results" ] || exit 0
echo
echo "side by side: median of $rounds round(s) of ${secs} s; cpu_us/q = server CPU µs per answered query"
awk -v servers="steerdns gdnsd knot floor" '
  { key = $1 SUBSEP $2; k = ++n[key]; qps[key, k] = $3; lost[key, k] = $4; cpu[key, k] = $5
    if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
  function median(a, key, k,   i, j, t, v) {
    for (i = 1; i <= k; i++) v[i] = a[key, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((k + 1) / 2)]
  }
  END {
    ns = split(servers, list, " ")
    printf "%-14s %-9s %10s %8s %9s\n", "mix", "server", "qps", "lost", "cpu_us/q"
    for (i = 1; i <= m; i++) {
      mix = order[i]; best = ""; bestname = ""; delete c
      for (s = 1; s <= ns; s++) {
        key = mix SUBSEP list[s]
        if (!(key in n)) continue
        c[list[s]] = median(cpu, key, n[key])
        printf "%-14s %-9s %10.0f %8d %9.2f\n", mix, list[s], median(qps, key, n[key]), median(lost, key, n[key]), c[list[s]]
        if ((list[s] == "gdnsd" || list[s] == "knot") && (best == "" || c[list[s]] < best)) { best = c[list[s]]; bestname = list[s] }
      }
      if (best != "" && best > 0 && ("steerdns" in c))
        printf "%-14s steerdns / best peer (%s): %.2f / %.2f = %.2f\n", mix, bestname, c["steerdns"], best, c["steerdns"] / best
      if (("floor" in c) && c["floor"] > 0 && ("steerdns" in c))
        printf "%-14s steerdns / floor: %.2f / %.2f = %.2f\n", mix, c["steerdns"], c["floor"], c["steerdns"] / c["floor"]
    }
  }' "$work/results"
