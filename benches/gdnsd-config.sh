#!/usr/bin/env bash
# Write a gdnsd 3.8 configuration directory that serves what steerdns serves in the
# benchmark, the way gdnsd would be deployed for it:
#   - the zone file as it is, plus the global names as DYNA records of the geoip plugin;
#   - a geoip map whose `nets` equal the latency table: each network's regions ordered by
#     RTT, regions without a measurement after them in the default order (steerdns ranks an
#     unknown RTT after every known one); no GeoIP2 database, like the demo config;
#   - http_status monitoring of the same demo replicas steerdns probes (same URL, interval,
#     timeout and thresholds), with the replicas' probe addresses as the answers (gdnsd
#     monitors the addresses it serves); IPv6 addresses are answered unmonitored (`up`), as
#     the demo replicas listen on IPv4 only;
#   - one UDP and one TCP thread, like every other server in the benchmark.
#
# Usage: benches/gdnsd-config.sh DIR ADDR PORT ZONE_FILE LATENCY_CSV
set -euo pipefail
dir=$1 addr=$2 port=$3 zone=$4 latency=$5
mkdir -p "$dir/zones" "$dir/run" "$dir/state"
cp "$zone" "$dir/zones/registry.example"
cat >>"$dir/zones/registry.example" <<EOF
contoso  5 DYNA geoip!contoso
fabrikam 5 DYNA geoip!fabrikam
EOF

# "cidr" => [ region, ... ] from the latency table: by RTT, then the rest in default order.
nets=$(grep -v '^#' "$latency" | awk -F, 'NF >= 3 && $1 != "cidr" {
    n = ++count[$1]; region[$1, n] = $2; rtt[$1, n] = $3
    if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 }
  }
  END {
    split("westeurope eastus southeastasia", dflt, " ")
    for (i = 1; i <= m; i++) {
      c = order[i]; k = count[c]
      for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++)
        if (rtt[c, b] + 0 < rtt[c, a] + 0) { t = rtt[c, a]; rtt[c, a] = rtt[c, b]; rtt[c, b] = t
          t = region[c, a]; region[c, a] = region[c, b]; region[c, b] = t }
      list = ""; delete have
      for (a = 1; a <= k; a++) { list = list (a > 1 ? ", " : "") region[c, a]; have[region[c, a]] = 1 }
      for (d = 1; d <= 3; d++) if (!(dflt[d] in have)) list = list ", " dflt[d]
      printf "          \"%s\" => [ %s ]\n", c, list
    }
  }')

service() { # NAME REGISTRY
  cat <<EOF
  $1 => {
    plugin => http_status
    port => 8080
    url_path => "/health?registry=$2"
    interval => 2
    timeout => 1
    down_thresh => 3
    ok_thresh => 2
    up_thresh => 2
  }
EOF
}

dcmap() { # REGISTRY V4_SUFFIX V6_SUFFIX
  cat <<EOF
        dcmap => {
          westeurope => { addrs_v4 => 127.0.4.21, addrs_v6 => { service_types => up, a => "2001:db8::$3" } }
          eastus => { addrs_v4 => 127.0.4.22, addrs_v6 => { service_types => up, a => "2001:db8:1::$3" } }
          southeastasia => { addrs_v4 => 127.0.4.23, addrs_v6 => { service_types => up, a => "2001:db8:2::$3" } }
        }
EOF
}

cat >"$dir/config" <<EOF
options => {
  listen => [ $addr ]
  dns_port => $port
  udp_threads => 1
  tcp_threads => 1
  run_dir => $dir/run
  state_dir => $dir/state
}
service_types => {
$(service contoso_health contoso)
$(service fabrikam_health fabrikam)
}
plugins => {
  geoip => {
    maps => {
      latency => {
        datacenters => [ westeurope, eastus, southeastasia ]
        nets => {
$nets
        }
      }
    }
    resources => {
      contoso => {
        map => latency
        service_types => contoso_health
$(dcmap contoso 10 10)
      }
      fabrikam => {
        map => latency
        service_types => fabrikam_health
$(dcmap fabrikam 11 11)
      }
    }
  }
}
EOF
