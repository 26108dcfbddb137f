//! Traffic per minute, over the real admin API: queries of known composition from three
//! client networks of the latency table (127.0.1.x `demo-ams`, 127.0.2.x `demo-nyc`,
//! 127.0.3.x `demo-sin`) over real UDP, then `GET /v1/traffic` counts each group's answers by
//! answered replica, exactly (every query here is answered), in the minute in progress.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use steerdns::demo_replica::DemoReplica;
use steerdns::metrics::traffic::TrafficView;

use crate::support::*;

async fn get(admin: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(format!("http://{admin}{path}"))
        .await
        .expect("admin");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_per_group_and_replica_match_what_was_sent() {
    let mut reps = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.16.{i}:0"))
            .await
            .expect("bind");
        reps.push(DemoReplica::start(l).expect("replica"));
    }
    let s = lab_server(&reps, &["contoso", "fabrikam"], "", &[]).await;
    let admin = s.handles.admin.expect("admin");
    let (_, body) = get(admin, "/v1/traffic").await;
    let before: TrafficView = serde_json::from_slice(&body).expect("json");

    // 60 / 40 / 20 queries from each network, contoso and fabrikam alternating.
    let plan = [("127.0.1", 60u64), ("127.0.2", 40), ("127.0.3", 20)];
    for (net, n) in plan {
        for i in 0..n {
            let src: IpAddr = format!("{net}.{}", 10 + i % 50).parse().expect("ip");
            let name = if i % 2 == 0 { "contoso" } else { "fabrikam" };
            let m = udp_from(
                src,
                s.addr,
                &query(&format!("{name}.registry.example."), RecordType::A, None),
            )
            .await;
            assert_eq!(m.answers.len(), 1, "{name} from {src}");
        }
    }
    let (status, body) = get(admin, "/v1/traffic").await;
    assert_eq!(status, 200);
    let v: TrafficView = serde_json::from_slice(&body).expect("json");
    let sent = |g: &str| {
        v.by_group.get(g).copied().unwrap_or(0) - before.by_group.get(g).copied().unwrap_or(0)
    };
    assert_eq!(sent("demo-ams"), 60, "{v:#?}");
    assert_eq!(sent("demo-nyc"), 40);
    assert_eq!(sent("demo-sin"), 20);
    // Each group answered by its nearest region (all healthy).
    let cell = |g: &str, r: &str| {
        v.series
            .iter()
            .find(|x| x.group == g && x.replica == r)
            .map_or(0, |x| x.total)
    };
    assert_eq!(cell("demo-ams", "westeurope"), 60);
    assert_eq!(cell("demo-nyc", "eastus"), 40);
    assert_eq!(cell("demo-sin", "southeastasia"), 20);
    assert!(!v.minutes.is_empty() && v.series.iter().all(|x| x.answers.len() == v.minutes.len()));

    // Per registry: the config file's registries have series of their own.
    let (status, body) = get(admin, "/v1/traffic?registry=contoso").await;
    assert_eq!(status, 200);
    let c: TrafficView = serde_json::from_slice(&body).expect("json");
    assert_eq!(c.by_replica.values().sum::<u64>(), 60, "{c:#?}");
    assert_eq!(c.by_replica.get("westeurope"), Some(&30));
    // The heaviest registries: 300 more answers for contoso from demo-ams, 100 for fabrikam
    // from demo-sin (360 and 160 in all), one in 16 sampled; the minute closed now (the
    // sampler does it at the boundary).
    for i in 0..400u32 {
        let (name, net) = if i % 4 == 0 {
            ("fabrikam", 3)
        } else {
            ("contoso", 1)
        };
        let src: IpAddr = format!("127.0.{net}.{}", 10 + i % 50).parse().expect("ip");
        let q = query(&format!("{name}.registry.example."), RecordType::A, None);
        assert_eq!(udp_from(src, s.addr, &q).await.answers.len(), 1);
    }
    let start = v.minutes.last().copied().expect("a minute");
    s.handles
        .traffic
        .close_minute(start, &s.handles.control.commands)
        .await;
    let (_, body) = get(admin, "/v1/traffic").await;
    let v: TrafficView = serde_json::from_slice(&body).expect("json");
    let top: Vec<(&str, u64)> = v
        .top_registries
        .iter()
        .map(|t| (t.registry.as_str(), t.answers))
        .collect();
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!((top[0].0, top[1].0), ("contoso", "fabrikam"), "{top:?}");
    // Estimates from 1-in-16 samples of 520 answers: within a quarter of the truth.
    assert!(
        top[0].1.abs_diff(360) <= 90 && top[1].1.abs_diff(160) <= 40,
        "{top:?}"
    );
    // By (client group × answered replica): contoso's largest cell is demo-ams answered by
    // westeurope (330 of 360), fabrikam's demo-sin by southeastasia (110 of 160); every cell
    // is a group answered by its nearest region, and the cells add up to the estimate.
    let nearest = [
        ("demo-ams", "westeurope"),
        ("demo-nyc", "eastus"),
        ("demo-sin", "southeastasia"),
    ];
    for (t, first) in v.top_registries.iter().zip([nearest[0], nearest[2]]) {
        let cells: Vec<(&str, &str)> = t
            .cells
            .iter()
            .map(|c| (c.group.as_str(), c.replica.as_str()))
            .collect();
        assert_eq!(cells.first(), Some(&first), "{t:?}");
        assert!(cells.iter().all(|c| nearest.contains(c)), "{t:?}");
        assert_eq!(t.cells.iter().map(|c| c.answers).sum::<u64>(), t.answers);
    }
    // Bad input: clear errors.
    let (status, body) = get(admin, "/v1/traffic?registry=nope").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = get(admin, "/v1/traffic?since=yesterday").await;
    assert_eq!(status, 400);

    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}

/// A dnsperf -B (length-prefixed) query for `contoso.registry.example` A with an ECS /24.
fn ecs_query(id: u16, net: [u8; 3]) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["contoso", "registry", "example"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    // OPT: payload 1232, option 8 (ECS): family 1, source /24, scope 0, the /24.
    q.extend_from_slice(&[
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0,
    ]);
    q.extend_from_slice(&net);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend(q);
    out
}

/// dnsperf sends a known composition — 50 % of the queries with an ECS subnet of the `NL`
/// network of the latency table, 30 % `US`, 20 % `SG` — and the per-group counts of
/// `/v1/traffic` match what it completed within 1 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnsperf_run_of_known_composition_is_counted_per_group() {
    if !std::path::Path::new("/usr/bin/dnsperf").exists() {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_DNSPERF").is_none(),
            "/usr/bin/dnsperf is missing"
        );
        eprintln!("SKIPPED: /usr/bin/dnsperf is missing (apt-get install dnsperf)");
        return;
    }
    let config = demo_config(
        "[routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
         [registries.contoso]\nname = \"contoso.registry.example.\"\n\
         [registries.contoso.replicas.westeurope]\nipv4 = [\"192.0.2.10\"]\n\
         [registries.contoso.replicas.eastus]\nipv4 = [\"198.51.100.10\"]\n\
         [registries.contoso.replicas.southeastasia]\nipv4 = [\"203.0.113.10\"]\n",
    );
    let s = TestServer::start_with_admin_files(&config, &[]).await;
    let admin = s.handles.admin.expect("admin");
    let dir = tempfile::tempdir().expect("tmp");
    let mut file = Vec::new();
    let nets = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let pattern = [0, 1, 0, 2, 0, 1, 0, 2, 0, 1]; // 5 NL, 3 US, 2 SG
    for i in 0..1000u16 {
        file.extend(ecs_query(i, nets[pattern[usize::from(i) % 10]]));
    }
    let path = dir.path().join("q.bin");
    std::fs::write(&path, &file).expect("write");
    let (_, body) = get(admin, "/v1/traffic").await;
    let before: TrafficView = serde_json::from_slice(&body).expect("json");
    let out = tokio::process::Command::new("dnsperf")
        .args([
            "-s",
            &s.addr.ip().to_string(),
            "-p",
            &s.addr.port().to_string(),
        ])
        .args([
            "-B",
            "-d",
            path.to_str().expect("utf8"),
            "-n",
            "5",
            "-c",
            "1",
            "-q",
            "20",
            "-t",
            "5",
        ])
        .output()
        .await
        .expect("dnsperf");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let completed: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries completed:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dnsperf summary:\n{text}"));
    assert!(
        completed >= 4_900,
        "dnsperf completed {completed} of 5 000:\n{text}"
    );
    let (_, body) = get(admin, "/v1/traffic").await;
    let v: TrafficView = serde_json::from_slice(&body).expect("json");
    let counted = |g: &str| {
        v.by_group.get(g).copied().unwrap_or(0) - before.by_group.get(g).copied().unwrap_or(0)
    };
    let total: u64 = ["NL", "US", "SG"].iter().map(|g| counted(g)).sum();
    assert!(
        total.abs_diff(completed) * 100 <= completed,
        "counted {total}, completed {completed}"
    );
    for (g, share) in [("NL", 50), ("US", 30), ("SG", 20)] {
        let want = completed * share / 100;
        let got = counted(g);
        assert!(
            got.abs_diff(want) * 100 <= want,
            "{g}: counted {got}, sent about {want}"
        );
    }
    s.stop().await;
}
