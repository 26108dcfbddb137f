#!/usr/bin/env bash
# Build the Debian package steerdns_VERSION-1_ARCH.deb with dpkg-deb, from a built binary.
#
#   packaging/build-deb.sh                      # cargo build --release, then package it
#   packaging/build-deb.sh --binary PATH        # package this binary (tests: the debug one)
#   packaging/build-deb.sh --out DIR            # where the .deb goes (default target/debian)
#
# Layout: /usr/sbin/steerdns; /etc/steerdns/steerdns.toml and zones/ (conffiles);
# /usr/lib/systemd/system/steerdns.service; steerdns(8) generated from the command line;
# docs in /usr/share/doc/steerdns; the steerdns user and /var/lib/steerdns from postinst.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary="target/release/steerdns"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
pkg="steerdns_${version}-1_${arch}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$pkg"

install -d "$root/DEBIAN" "$root/usr/sbin" "$root/etc/steerdns/zones" \
  "$root/usr/lib/systemd/system" "$root/usr/share/man/man8" \
  "$root/usr/share/doc/steerdns" "$root/usr/share/lintian/overrides"
install -m 0755 "$binary" "$root/usr/sbin/steerdns"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/steerdns"
install -m 0644 packaging/steerdns.toml "$root/etc/steerdns/steerdns.toml"
install -m 0644 zones/registry.example.zone "$root/etc/steerdns/zones/registry.example.zone"
install -m 0644 packaging/steerdns.service "$root/usr/lib/systemd/system/steerdns.service"
"$root/usr/sbin/steerdns" manpage | gzip -9n > "$root/usr/share/man/man8/steerdns.8.gz"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/steerdns/copyright"
gzip -9n < packaging/debian/changelog > "$root/usr/share/doc/steerdns/changelog.Debian.gz"
gzip -9n < README.md > "$root/usr/share/doc/steerdns/README.md.gz"
for doc in configuration delegation fleet; do
  gzip -9n < "docs/$doc.md" > "$root/usr/share/doc/steerdns/$doc.md.gz"
done
install -m 0644 docs/alerts.yml "$root/usr/share/doc/steerdns/alerts.yml"
install -m 0644 docs/grafana-dashboard.json "$root/usr/share/doc/steerdns/grafana-dashboard.json"
install -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/steerdns"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

depends="libc6 (>= 2.34), adduser"
if command -v dpkg-shlibdeps >/dev/null; then
  # The shared libraries the binary links, as Debian names them.
  mkdir -p "$stage/debian" && echo "Source: steerdns" > "$stage/debian/control"
  shlibs=$(cd "$stage" && dpkg-shlibdeps -O "$root/usr/sbin/steerdns" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  [ -n "$shlibs" ] && depends="$shlibs, adduser"
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: steerdns
Version: ${version}-1
Architecture: ${arch}
Maintainer: steerdns developers <steerdns@example.invalid>
Installed-Size: ${size}
Depends: ${depends}
Recommends: dnsutils
Section: net
Priority: optional
Homepage: https://example.invalid/steerdns
Description: authoritative DNS server answering with the nearest healthy replica
 steerdns answers a service's global name with the lowest-latency healthy
 replica for each client: it locates the client (EDNS Client Subnet, a latency
 table or a MaxMind City database), probes every replica's deep-health
 endpoint, degrades a replica only after N consecutive failures, and answers
 with short TTLs. Everything else is an RFC-correct authoritative server for
 its zones.
 .
 The package runs it as a hardened systemd service (Type=notify, watchdog,
 an unprivileged user with only CAP_NET_BIND_SERVICE), with its configuration
 in /etc/steerdns and its state in /var/lib/steerdns.
CONTROL
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/$pkg.deb" >/dev/null
echo "$out/$pkg.deb"
