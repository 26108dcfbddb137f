//! Performance routing over the wire: clients on different loopback sources and ECS subnets
//! get the replicas the latency table / mmdb / default order dictate, with the right scope.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
const SEA: &str = "203.0.113.10";

/// Regions, the demo latency table, and registries (contoso as in the demo; more in `extra`).
fn config(routing_extra: &str, extra: &str) -> String {
    demo_config(&format!(
        r#"
[routing]
latency_table = "latency.csv"
default_order = ["westeurope", "eastus", "southeastasia"]
{routing_extra}
[regions.westeurope]
[regions.eastus]
[regions.southeastasia]

[registries.contoso]
name = "contoso.registry.example."
ttl = "30s"
[registries.contoso.replicas.westeurope]
ipv4 = ["{WEU}"]
ipv6 = ["2001:db8::10"]
[registries.contoso.replicas.eastus]
ipv4 = ["{EUS}"]
ipv6 = ["2001:db8:1::10"]
[registries.contoso.replicas.southeastasia]
ipv4 = ["{SEA}"]
ipv6 = ["2001:db8:2::10"]
{extra}
"#
    ))
}

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

async fn tcp_from(source: IpAddr, server: SocketAddr, msg: &Message) -> Message {
    use tokio::io::AsyncWriteExt;
    let sock = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .expect("socket");
    sock.bind(SocketAddr::new(source, 0)).expect("bind");
    let mut stream = sock.connect(server).await.expect("connect");
    let b = msg.to_vec().expect("enc");
    let mut f = (b.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&b);
    stream.write_all(&f).await.expect("write");
    Message::from_vec(&read_frame(&mut stream).await.expect("answer")).expect("decode")
}

#[tokio::test]
async fn loopback_sources_get_their_nearest_replica_over_udp_and_tcp() {
    let s = TestServer::start(&config("", "")).await;
    let q = query("contoso.registry.example.", RecordType::A, Some(edns(1232)));
    for (source, want) in [("127.0.1.5", WEU), ("127.0.2.5", EUS), ("127.0.3.5", SEA)] {
        let src: IpAddr = source.parse().expect("ip");
        for m in [
            udp_from(src, s.addr, &q).await,
            tcp_from(src, s.addr, &q).await,
        ] {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative, "AA on a global answer");
            assert_eq!(addresses(&m), vec![want.to_string()], "client {source}");
            assert_eq!(m.answers[0].ttl, 30, "registry TTL");
            assert!(answer_ecs(&m).is_none(), "no ECS asked, none echoed");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn ecs_subnets_decide_with_the_right_scope() {
    let s = TestServer::start(&config("", "")).await;
    // (subnet, qtype, expected address, expected scope)
    let cases = [
        // The /8 entry, outside its differently routed /24: the scope is lengthened to 13 so a
        // resolver does not reuse the answer for 10.1.2.0/24.
        ("10.9.9.0/24", RecordType::A, WEU, 13),
        // Inside the /24: scope 24.
        ("10.1.2.0/24", RecordType::A, EUS, 24),
        // A /16 source inside the /8, next to the /24: answer for 10.1.0.0, scope past the
        // source prefix (RFC 7871 allows it).
        ("10.1.0.0/16", RecordType::A, WEU, 23),
        ("198.51.100.0/24", RecordType::A, EUS, 24),
        // IPv6 ECS.
        ("2001:db8:3::/48", RecordType::AAAA, "2001:db8:2::10", 48),
        ("2001:db8:1::/48", RecordType::AAAA, "2001:db8::10", 48),
    ];
    for (subnet, qtype, want, scope) in cases {
        let q = query("contoso.registry.example.", qtype, Some(edns_ecs(subnet)));
        for m in [udp(s.addr, &q).await, tcp(s.addr, &q).await] {
            assert_eq!(addresses(&m), vec![want.to_string()], "ECS {subnet}");
            let cs = answer_ecs(&m).expect("ECS echoed");
            let sent: hickory_proto::rr::rdata::opt::ClientSubnet = subnet.parse().expect("subnet");
            assert_eq!(
                (cs.addr(), cs.source_prefix()),
                (sent.addr(), sent.source_prefix()),
                "echoed as asked"
            );
            assert_eq!(cs.scope_prefix(), scope, "scope for {subnet}");
        }
    }
    // Source prefix 0: the client opts out; answered for the resolver (127.0.2.5 -> eastus),
    // scope 0.
    let q = query(
        "contoso.registry.example.",
        RecordType::A,
        Some(edns_ecs("0.0.0.0/0")),
    );
    let m = udp_from("127.0.2.5".parse().expect("ip"), s.addr, &q).await;
    assert_eq!(addresses(&m), vec![EUS.to_string()]);
    assert_eq!(answer_ecs(&m).expect("echo").scope_prefix(), 0);
    s.stop().await;
}

#[tokio::test]
async fn ipv6_clients_are_routed() {
    let s = TestServer::start_on(&config("", ""), "[::1]:0".parse().expect("addr")).await;
    let q = query(
        "contoso.registry.example.",
        RecordType::AAAA,
        Some(edns(1232)),
    );
    let m = udp_from("::1".parse().expect("ip"), s.addr, &q).await;
    assert_eq!(
        addresses(&m),
        vec!["2001:db8:2::10".to_string()],
        "::1/128 is southeastasia"
    );
    let m = tcp_from("::1".parse().expect("ip"), s.addr, &q).await;
    assert_eq!(addresses(&m), vec!["2001:db8:2::10".to_string()]);
    s.stop().await;
}

/// A tiny MaxMind City database: three networks with coordinates, one without.
fn write_mmdb(path: &std::path::Path) {
    let rows = [
        // Singapore, New York, Amsterdam.
        ("100.64.0.0/16", city(Some((1.35, 103.82)), "SG", None)),
        ("100.65.0.0/16", city(Some((40.71, -74.0)), "US", None)),
        ("2001:db8:f::/48", city(Some((52.37, 4.90)), "NL", None)),
        ("100.66.0.0/16", city(None, "ZZ", None)),
    ];
    std::fs::write(path, nested_mmdb("GeoLite2-City", &rows)).expect("write mmdb");
}

#[tokio::test]
async fn mmdb_geo_and_default_order_bases() {
    let dir = tempfile::tempdir().expect("tmp");
    let mmdb = dir.path().join("test-city.mmdb");
    write_mmdb(&mmdb);
    let s = TestServer::start(&config(
        &format!("mmdb = {:?}", mmdb.to_str().expect("utf8")),
        r#"
[registries.fabrikam]
name = "fabrikam.registry.example."
default_order = ["eastus", "southeastasia", "westeurope"]
[registries.fabrikam.replicas.westeurope]
ipv4 = ["192.0.2.20"]
[registries.fabrikam.replicas.eastus]
ipv4 = ["198.51.100.20"]
"#,
    ))
    .await;
    let ask = |name: &str, subnet: &str, qtype| query(name, qtype, Some(edns_ecs(subnet)));
    // Geo: the nearest region by great-circle distance; scope = the mmdb network.
    for (subnet, qtype, want, mmdb_prefix) in [
        ("100.64.1.0/24", RecordType::A, SEA, 16),
        ("100.65.7.0/24", RecordType::A, EUS, 16),
        ("2001:db8:f:1::/64", RecordType::AAAA, "2001:db8::10", 48),
    ] {
        let m = udp(s.addr, &ask("contoso.registry.example.", subnet, qtype)).await;
        assert_eq!(addresses(&m), vec![want.to_string()], "geo {subnet}");
        let scope = answer_ecs(&m).expect("echo").scope_prefix();
        assert_eq!(scope, mmdb_prefix, "mmdb network as scope for {subnet}");
    }
    // Default order: a client neither the table nor the mmdb places (or a record without
    // coordinates) follows the server order (westeurope first) or the registry's own order.
    for subnet in ["100.66.3.0/24", "172.20.0.0/16"] {
        let m = udp(
            s.addr,
            &ask("contoso.registry.example.", subnet, RecordType::A),
        )
        .await;
        assert_eq!(addresses(&m), vec![WEU.to_string()], "default {subnet}");
        let m = udp(
            s.addr,
            &ask("fabrikam.registry.example.", subnet, RecordType::A),
        )
        .await;
        assert_eq!(
            addresses(&m),
            vec!["198.51.100.20".to_string()],
            "registry order {subnet}"
        );
        let scope = answer_ecs(&m).expect("echo").scope_prefix();
        assert!(scope > 0, "a tailored answer never has scope 0 ({subnet})");
    }
    s.stop().await;
}

#[tokio::test]
async fn answer_shapes() {
    let s = TestServer::start(&config(
        "",
        r#"
[registries.multi]
name = "multi.registry.example."
ttl = "5s"
answers = 2
[registries.multi.replicas.westeurope]
ipv4 = ["192.0.2.31", "192.0.2.32"]
[registries.multi.replicas.eastus]
ipv4 = ["198.51.100.31"]
ipv6 = ["2001:db8:1::31"]
[registries.multi.replicas.southeastasia]
ipv4 = ["203.0.113.31"]

[registries.v4only]
name = "v4only.registry.example."
[registries.v4only.replicas.westeurope]
ipv4 = ["192.0.2.41"]

[registries.aliased]
name = "aliased.registry.example."
[registries.aliased.replicas.westeurope]
cname = "contoso-westeurope.registry.example."
[registries.aliased.replicas.eastus]
cname = "contoso-eastus.registry.example."
[registries.aliased.replicas.southeastasia]
cname = "elsewhere.example.net."
"#,
    ))
    .await;
    let from = |ip: &str| ip.parse::<IpAddr>().expect("ip");

    // answers = 2: the two best, in order (a replica's addresses together).
    let m = udp_from(
        from("127.0.2.9"),
        s.addr,
        &query("multi.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(
        addresses(&m),
        vec!["198.51.100.31", "192.0.2.31", "192.0.2.32"]
    );
    assert!(m.answers.iter().all(|r| r.ttl == 5));
    // AAAA: only replicas with IPv6 are candidates (the best one with IPv6 wins).
    let m = udp_from(
        from("127.0.3.9"),
        s.addr,
        &query("multi.registry.example.", RecordType::AAAA, None),
    )
    .await;
    assert_eq!(addresses(&m), vec!["2001:db8:1::31"]);
    // No replica with IPv6: NODATA with the zone SOA.
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let m = udp(s.addr, &query("v4only.registry.example.", qtype, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty(), "{qtype}");
        assert!(
            matches!(m.authorities[0].data, RData::SOA(_)),
            "{qtype}: SOA in authority"
        );
        assert_eq!(m.authorities[0].ttl, 60);
    }
    // CNAME replicas: the CNAME, then the target's address from our zone.
    let m = udp_from(
        from("127.0.2.9"),
        s.addr,
        &query("aliased.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert!(
        matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "contoso-eastus.registry.example.")
    );
    assert_eq!(addresses(&m), vec![EUS]);
    // A target outside our zones: the CNAME alone, the resolver follows it.
    let m = udp_from(
        from("127.0.3.9"),
        s.addr,
        &query("aliased.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    assert!(
        matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "elsewhere.example.net.")
    );
    // Names below a global name are static-zone names (NXDOMAIN here).
    let m = udp(
        s.addr,
        &query("x.contoso.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    s.stop().await;
}

#[test]
fn explain_matches_the_wire() {
    use std::process::Command;
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let cfg_text = std::fs::read_to_string(repo().join("steerdns.toml"))
        .expect("read")
        .replace(
            "zones_dir = \"zones\"",
            &format!("zones_dir = {:?}", repo().join("zones")),
        )
        .replace(
            "geo_dir = \"geo\"",
            &format!("geo_dir = {:?}", repo().join("geo")),
        );
    rt.block_on(async {
        let s = TestServer::start(&cfg_text).await;
        let cfg = s.dir().join("steerdns.toml");
        for (client, ecs, qtype) in [
            ("127.0.1.7", None, "A"),
            ("127.0.2.7", None, "AAAA"),
            ("127.0.0.1", Some("10.9.9.0/24"), "A"),
            ("127.0.0.1", Some("10.1.2.0/24"), "A"),
            ("127.0.0.1", Some("2001:db8:3::/48"), "AAAA"),
            ("127.0.3.3", Some("0.0.0.0/0"), "A"),
        ] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerdns"));
            cmd.args(["explain", "--json", "--config"]).arg(&cfg).args([
                "contoso.registry.example",
                client,
                "--type",
                qtype,
            ]);
            if let Some(e) = ecs {
                cmd.args(["--ecs", e]);
            }
            let out = cmd.output().expect("run explain");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let x: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            let explained: Vec<String> = x["answer"]
                .as_array()
                .expect("answer")
                .iter()
                .map(|a| {
                    a.as_str()
                        .expect("str")
                        .split_whitespace()
                        .last()
                        .expect("rdata")
                        .to_string()
                })
                .collect();

            let rtype: RecordType = qtype.parse().expect("type");
            let q = query(
                "contoso.registry.example.",
                rtype,
                Some(ecs.map_or_else(|| edns(1232), edns_ecs)),
            );
            let m = udp_from(client.parse().expect("ip"), s.addr, &q).await;
            assert_eq!(addresses(&m), explained, "client {client} ecs {ecs:?}");
            if ecs.is_some() {
                assert_eq!(
                    u64::from(answer_ecs(&m).expect("echo").scope_prefix()),
                    x["scope_prefix"].as_u64().expect("scope"),
                    "scope for {client} {ecs:?}"
                );
            }
        }
        s.stop().await;
    });
}
