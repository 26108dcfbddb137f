#!/usr/bin/env bash
# Fleet benchmark (not a test): a real etcd, three steerdns instances with [fleet], simulated
# replicas and N catalog registries; override and fleet-verdict propagation (median and max of
# 20 trials), etcd keys and bytes with one storage-account fault. See benches/fleet/run.py.
#
# Usage: benches/fleet.sh [N ...]     (default: 1000 100000)
# Environment: STEERDNS_BIN (default target/release/steerdns, else target/debug/steerdns),
#              TRIALS (default 20), KEEP=1 (keep the work directory).
# Needs etcd and etcdctl (apt-get install etcd-server etcd-client) and python3.
set -euo pipefail
exec python3 "$(dirname "$0")/fleet/run.py" "$@"
