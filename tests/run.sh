#!/usr/bin/env bash
# Run every test of steerdns: formatting, lints, unit tests, in-process integration tests,
# the end-to-end tests against the built binary with dig, and the resolver lab.
# Installs the Debian packages the tests need (tests/packages.txt, tests/lab/packages.txt)
# when they are missing; that needs root (as on CI and the dev machines).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for list in tests/packages.txt tests/lab/packages.txt; do
  [ -f "$list" ] || continue
  while read -r pkg; do
    case "$pkg" in ''|'#'*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < "$list"
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# The page tests must really run a browser here (chromium is installed above).
export STEERDNS_REQUIRE_BROWSER=1
# The fleet tests must really run etcd here (etcd-server is installed above).
export STEERDNS_REQUIRE_ETCD=1
# The alert rules must really be checked by promtool here (prometheus is installed above).
export STEERDNS_REQUIRE_PROMTOOL=1
# The package test must really install the .deb here (root, dpkg, lintian).
export STEERDNS_REQUIRE_PACKAGE=1
export STEERDNS_REQUIRE_DNSPERF=1
# The signed-zone test must really validate with delv (bind9-dnsutils, bind9-utils).
export STEERDNS_REQUIRE_DNSSEC_TOOLS=1
# The container image needs a static binary (FROM scratch): a debug build for the target
# triple, in its own directory of target/.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu --bin steerdns
export STEERDNS_STATIC_BIN=target/x86_64-unknown-linux-gnu/debug/steerdns
export STEERDNS_REQUIRE_CONTAINER=1
cargo test --all-targets

# Fuzz smoke: each cargo-fuzz target (fuzz/) for a bounded number of runs, seeds from
# fuzz/seeds, new inputs into a scratch corpus outside the tree. Needs a nightly toolchain;
# cargo-fuzz is installed when missing. Skipped with a note otherwise.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "tests/run.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  # The sanitizer-instrumented dependencies take many minutes to build from cold: they are
  # kept in a build cache outside the clone (only steerdns itself is rebuilt per clone).
  fuzz_target=${STEERDNS_FUZZ_TARGET_DIR:-$HOME/.cache/steerdns/fuzz-target}
  (
    cd fuzz
    cargo +nightly fuzz build --target-dir "$fuzz_target"
    for target in request signed zone_file config latency_table deep_health; do
      mkdir -p "$scratch/corpus/$target"
      # libFuzzer writes crash-* and fuzz-*.log into the current directory: keep them apart.
      cargo +nightly fuzz run --target-dir "$fuzz_target" "$target" "$scratch/corpus/$target" "seeds/$target" -- \
        -max_total_time=10 -runs=200000 -artifact_prefix="$scratch/" -print_final_stats=1
    done
  )
else
  echo "tests/run.sh: no nightly toolchain, skipping the fuzz smoke (fuzz/README.md)"
fi
