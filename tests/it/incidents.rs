//! Incidents at catalog scale, over the real admin API: 100 000 catalog registries on one
//! template, three real demo replicas (127.0.14.x) serving one deep-health document each.
//! One storage fault gives one incident with the exact number of registries that depend on
//! storage, computed from the profiles; its registries page through; a second fault on
//! another resource at another replica is a second incident; mending the first closes it.
//!
//! The status page on the same scale, in headless Chromium: it renders the summary, the
//! incident and both charts, its search finds a registry, and one refresh's reads stay
//! within 100 KB.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use steerdns::demo_replica::DemoReplica;
use steerdns::state::view::{IncidentView, IncidentsView, RegistryPage};
use tokio::time::Instant;

use crate::support::*;

const N: usize = 100_000;
const LIMIT: Duration = Duration::from_secs(30);
/// A client the latency table puts nearest westeurope.
const CLIENT_WEU: &str = "127.0.1.46";
const EUS: &str = "198.51.100.10";

/// The `depends_on` of registry `i`: storage on three of five, cache on one, auth alone on
/// one. Five profiles.
fn deps(i: usize) -> &'static str {
    [
        "storage",
        "cache",
        "auth;storage",
        "auth",
        "metadata;storage",
    ][i % 5]
}

fn config(reps: &[DemoReplica]) -> String {
    let mut text = demo_config(
        "[routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
         [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n\
         failure_threshold = 2\nsuccess_threshold = 2\n\
         [catalog]\nfile = \"registries.csv\"\n\
         [templates.fleet]\nttl = \"3s\"\n",
    );
    for ((region, addr), r) in steerdns::demo_replica::LAB_REGIONS.iter().zip(reps) {
        text.push_str(&format!(
            "[templates.fleet.replicas.{region}]\nipv4 = [\"{addr}\"]\nhealth.url = \"{}\"\n",
            r.health_url("fleet")
        ));
    }
    text
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get<T: serde::de::DeserializeOwned>(s: &TestServer, path: &str) -> T {
    let admin = s.handles.admin.expect("admin");
    let r = http()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .expect("admin reachable");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    let body = r.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("json")
}

async fn incidents(s: &TestServer) -> IncidentsView {
    get(s, "/v1/incidents").await
}

/// Wait until the open incidents satisfy `ok`.
async fn wait_for(
    s: &TestServer,
    what: &str,
    ok: impl Fn(&IncidentsView) -> bool,
) -> IncidentsView {
    let start = Instant::now();
    loop {
        let v = incidents(s).await;
        if ok(&v) {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "{what}: never; last {v:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn open_on<'a>(v: &'a IncidentsView, region: &str, resource: &str) -> Option<&'a IncidentView> {
    v.open
        .iter()
        .find(|i| i.cause.region == region && i.cause.resource == resource)
}

/// Three demo replicas on 127.0.14.`base`+1.. and a server with the [`N`]-registry catalog,
/// its first probe round done.
async fn catalog_server(base: u8) -> (TestServer, Vec<DemoReplica>) {
    let mut reps = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.14.{}:0", base + i))
            .await
            .expect("bind replica");
        reps.push(DemoReplica::start(l).expect("replica"));
    }
    let mut catalog = String::from("key,name,template,depends_on,ttl,answers\n");
    for i in 0..N {
        catalog.push_str(&format!(
            "r{i},r{i}.registry.example.,fleet,{},,\n",
            deps(i)
        ));
    }
    let s =
        TestServer::start_with_admin_files(&config(&reps), &[("registries.csv", &catalog)]).await;
    let mut rx = s.handles.control.first_round.clone();
    tokio::time::timeout(LIMIT, rx.wait_for(|d| *d))
        .await
        .expect("first round in time")
        .expect("open");
    (s, reps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fault_is_one_incident_with_the_exact_count_paged_and_closed_when_mended() {
    let (s, reps) = catalog_server(0).await;
    assert!(
        incidents(&s).await.open.is_empty(),
        "all healthy: no incident"
    );

    // Westeurope's storage fails (its front door still answers 200 with the document).
    reps[0].fail("storage", Some("fleet"));
    let on_storage: BTreeSet<String> = (0..N)
        .filter(|i| deps(*i).contains("storage"))
        .map(|i| format!("r{i}"))
        .collect();
    let v = wait_for(&s, "the storage incident", |v| {
        open_on(v, "westeurope", "storage").is_some_and(|i| i.registries == on_storage.len() as u64)
    })
    .await;
    assert_eq!(v.open.len(), 1, "one fault, one incident: {v:#?}");
    let inc = &v.open[0];
    assert_eq!(inc.registries, 60_000);
    assert_eq!(inc.profiles, 3, "storage, auth;storage, metadata;storage");
    assert_eq!(inc.failing_open, 0);
    assert_eq!(inc.answered_now.len(), 1, "{inc:?}");
    assert_eq!(inc.answered_now[0].region.as_deref(), Some("eastus"));
    assert_eq!(inc.answered_now[0].registries, 60_000);
    assert!(
        inc.cause.check.contains(&reps[0].health_url("fleet")),
        "{inc:?}"
    );
    assert_eq!(inc.samples.len(), 5);
    assert!(inc.samples.iter().all(|k| on_storage.contains(k)));
    // What the incident says is what DNS does: a storage registry's westeurope clients get
    // eastus; an auth-only registry stays.
    let client: IpAddr = CLIENT_WEU.parse().expect("ip");
    let a = |m: &hickory_proto::op::Message| match m.answers.first().map(|r| &r.data) {
        Some(RData::A(a)) => a.to_string(),
        other => panic!("no A: {other:?}"),
    };
    let m = udp_from(
        client,
        s.addr,
        &query("r0.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(a(&m), EUS);
    let m = udp_from(
        client,
        s.addr,
        &query("r3.registry.example.", RecordType::A, None),
    )
    .await;
    assert_ne!(a(&m), EUS);

    // Its registries page through, in key order, exactly the storage ones.
    let mut seen = Vec::with_capacity(on_storage.len());
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/incidents/{}/registries?limit=1000&after={a}", inc.id),
            None => format!("/v1/incidents/{}/registries?limit=1000", inc.id),
        };
        let page: RegistryPage = get(&s, &path).await;
        assert_eq!(page.total, 60_000);
        assert!(page.registries.len() <= 1000);
        seen.extend(page.registries);
        pages += 1;
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 60);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "key order, no repeats"
    );
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), on_storage);

    // The gauge says the same.
    let admin = s.handles.admin.expect("admin");
    let text = http()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(
            &text,
            "steerdns_rerouted_registries",
            &["region=\"westeurope\"", "resource=\"storage\""]
        ),
        60_000.0
    );

    // A second fault, on another resource at another replica: a second incident.
    reps[1].fail("cache", Some("fleet"));
    let v = wait_for(&s, "the cache incident", |v| {
        open_on(v, "eastus", "cache").is_some_and(|i| i.registries == 20_000)
    })
    .await;
    assert_eq!(v.open.len(), 2, "{v:#?}");
    let cache = open_on(&v, "eastus", "cache").expect("cache");
    assert_ne!(cache.id, inc.id);
    assert_eq!(
        open_on(&v, "westeurope", "storage").map(|i| i.registries),
        Some(60_000)
    );

    // Mend westeurope: its incident closes, the other stays.
    reps[0].recover(None, None);
    let v = wait_for(&s, "the storage incident closes", |v| v.open.len() == 1).await;
    assert_eq!(v.open[0].id, cache.id);
    let closed = v
        .recent
        .iter()
        .find(|i| i.id == inc.id)
        .expect("closed, listed as recent");
    assert!(!closed.open && closed.closed_at.is_some());
    assert_eq!(closed.peak_registries, 60_000);
    assert_eq!(closed.registries, 0);

    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_at_100_000_registries_shows_the_incident_charts_and_finds_a_registry() {
    let (s, reps) = catalog_server(3).await;
    reps[0].fail("storage", Some("fleet"));
    wait_for(&s, "the storage incident", |v| {
        open_on(v, "westeurope", "storage").is_some_and(|i| i.registries == 60_000)
    })
    .await;
    // Some answers for the share chart: clients near each region.
    for (net, n) in [("127.0.1", 30), ("127.0.2", 20), ("127.0.3", 10)] {
        for i in 0..n {
            let src: IpAddr = format!("{net}.{}", 20 + i).parse().expect("ip");
            let q = query(&format!("r{i}.registry.example."), RecordType::A, None);
            assert!(!udp_from(src, s.addr, &q).await.answers.is_empty());
        }
    }
    let admin = s.handles.admin.expect("admin");

    // One refresh reads these; together at most 100 KB at any registry count.
    let mut bytes = 0;
    for path in [
        "/v1/status?limit=20",
        "/v1/incidents?recent=10",
        "/v1/traffic?by=replica",
        "/v1/events?limit=20",
    ] {
        let body = http()
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        eprintln!("{path}: {} bytes", body.len());
        bytes += body.len();
    }
    assert!(bytes <= 100 * 1024, "one refresh reads {bytes} bytes");

    let profile = tempfile::tempdir().expect("profile");
    let Some(dom) = chromium(profile.path(), "--dump-dom", &format!("http://{admin}/")).await
    else {
        return;
    };
    for want in [
        "100,000",                                        // the registries card
        "60,000",                                         // rerouted by the incident
        "[storage]",                                      // its cause
        "eastus 100%",                                    // where the clients go now
        "id=\"share-chart\"",                             // the answer-share chart
        "data-replica=\"westeurope\"",                    // with a westeurope area
        "id=\"timeline-chart\"",                          // the incident timeline
        "data-incident=",                                 // with the incident's bar
        "<span class=\"state degraded\">degraded</span>", // a degraded replica row
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    assert!(!dom.contains("\">Cannot reach the admin API"), "{dom}");

    // Search, done on the server: the key prefix r4242 finds r4242 and r42420..r42429.
    let dom = chromium(
        profile.path(),
        "--dump-dom",
        &format!("http://{admin}/#q=r4242"),
    )
    .await
    .expect("chromium");
    assert!(dom.contains(">r4242</a>"), "search result:\n{dom}");
    assert!(dom.contains("11 registries start with"), "{dom}");
    assert!(!dom.contains(">r4243</a>"), "only matches");

    // A registry's detail: its failover timeline names the incident.
    let dom = chromium(
        profile.path(),
        "--dump-dom",
        &format!("http://{admin}/#registry=r0"),
    )
    .await
    .expect("chromium");
    assert!(dom.contains("Registry r0"), "{dom}");
    assert!(dom.contains("Its failover timeline"), "{dom}");
    assert!(dom.contains("went to eastus 100%"), "{dom}");

    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    let shot = artifacts.join("status-page-100k.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &format!("--screenshot={}", shot.display()),
        &format!("http://{admin}/"),
    )
    .await
    .expect("chromium");
    assert!(std::fs::read(&shot).expect("png").starts_with(b"\x89PNG"));

    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}
