//! Registries as data: a catalog file of registries on a shared template, changed at runtime
//! through the writer's commands (what `PUT`/`DELETE /v1/registries/KEY` send), persisted in
//! the journal, judged per registry on the dependencies it names, and never answered with a
//! disabled replica while the registry set changes. Real demo replicas on 127.0.12.x, real
//! DNS over UDP.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use steerdns::admin::context::{AdminError, Command, OverrideAction, OverrideCommand};
use steerdns::demo_replica::DemoReplica;
use steerdns::overrides::Target;
use steerdns::state::view::{RegistryRequest, ReplicaState, StatusQuery};
use tokio::time::Instant;

use crate::support::*;

const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
/// A client the latency table puts nearest westeurope, then eastus, then southeastasia.
const CLIENT_WEU: &str = "127.0.1.45";
const LIMIT: Duration = Duration::from_secs(10);

/// Three demo replicas and a config with template `fleet` (one deep URL per replica for
/// every registry), the catalog `registries.csv`, and `extra` tables.
async fn replicas(base: u8) -> Vec<DemoReplica> {
    let mut out = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.12.{}:0", base + i))
            .await
            .expect("bind replica");
        out.push(DemoReplica::start(l).expect("replica"));
    }
    out
}

fn config(replicas: &[DemoReplica], extra: &str) -> String {
    let mut text = demo_config(&format!(
        "[routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
         [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n\
         failure_threshold = 3\nsuccess_threshold = 2\n\
         [catalog]\nfile = \"registries.csv\"\n\
         [templates.fleet]\nttl = \"3s\"\n{extra}\n"
    ));
    for ((region, addr), r) in steerdns::demo_replica::LAB_REGIONS.iter().zip(replicas) {
        text.push_str(&format!(
            "[templates.fleet.replicas.{region}]\nipv4 = [\"{addr}\"]\nhealth.url = \"{}\"\n",
            r.health_url("fleet")
        ));
    }
    text
}

fn catalog(lines: &[String]) -> String {
    let mut text = String::from("# test catalog\nkey,name,template,depends_on,ttl,answers\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

async fn put(s: &TestServer, key: &str, depends_on: &[&str]) -> Result<(), AdminError> {
    let request = RegistryRequest {
        name: format!("{key}.registry.example."),
        template: "fleet".into(),
        depends_on: Some(depends_on.iter().map(|d| d.to_string()).collect()),
        ttl: None,
        answers: None,
    };
    put_request(s, key, request).await
}

async fn put_request(
    s: &TestServer,
    key: &str,
    request: RegistryRequest,
) -> Result<(), AdminError> {
    ask(s, |reply| Command::PutRegistry {
        key: key.into(),
        request,
        who: "test".into(),
        reply,
    })
    .await
    .map(|_| ())
}

async fn delete(s: &TestServer, key: &str) -> Result<(), AdminError> {
    ask(s, |reply| Command::DeleteRegistry {
        key: key.into(),
        who: "test".into(),
        reply,
    })
    .await
    .map(|_| ())
}

/// The A answer (address, TTL) for `key` asked from the westeurope client, or the rcode.
async fn answer(s: &TestServer, key: &str) -> Result<(String, u32), ResponseCode> {
    let q = query(&format!("{key}.registry.example."), RecordType::A, None);
    let m = udp_from(CLIENT_WEU.parse::<IpAddr>().expect("ip"), s.addr, &q).await;
    match m.answers.first() {
        Some(r) => match &r.data {
            RData::A(a) => Ok((a.to_string(), r.ttl)),
            _ => Err(m.metadata.response_code),
        },
        None => Err(m.metadata.response_code),
    }
}

async fn wait_answer(s: &TestServer, key: &str, want: &str) {
    let start = Instant::now();
    loop {
        if answer(s, key).await.is_ok_and(|(a, _)| a == want) {
            return;
        }
        assert!(start.elapsed() < LIMIT, "{key}: answer never became {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stop the server, then the replicas.
async fn teardown(s: TestServer, reps: Vec<DemoReplica>) {
    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}

/// A server on `reps` with the catalog `lines`.
async fn start(reps: &[DemoReplica], lines: &[String]) -> TestServer {
    let cfg = config(reps, "");
    let text = catalog(lines);
    TestServer::start_with(
        &cfg,
        &[("registries.csv", &text)],
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
}

async fn first_round(s: &TestServer) {
    let mut rx = s.handles.control.first_round.clone();
    tokio::time::timeout(LIMIT, rx.wait_for(|done| *done))
        .await
        .expect("first round in time")
        .expect("open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_registries_answer_change_at_runtime_and_survive_a_restart() {
    let reps = replicas(0).await;
    let cfg = config(&reps, "[admin]\nmetrics_registries = [\"alpha\"]\n");
    let files = [(
        "registries.csv",
        catalog(&[
            "alpha,alpha.registry.example.,fleet,storage;auth,,".into(),
            "beta,Beta.Registry.Example,fleet,cache,7s,".into(),
        ]),
    )];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let listen = "127.0.0.1:0".parse().expect("addr");
    let s = TestServer::start_with(&cfg, &files, listen).await;
    // TTL: the template's, or the registry's own.
    assert_eq!(answer(&s, "alpha").await, Ok((WEU.into(), 3)));
    assert_eq!(answer(&s, "beta").await, Ok((WEU.into(), 7)));
    // Series: one per template replica, plus one per replica of an allow-listed registry.
    let text = s.handles.stats.metrics.render();
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("steerdns_answers_total{registry=\"template/fleet\",replica=\"westeurope\"}"),
        2,
        "{text}"
    );
    assert_eq!(
        count("steerdns_answers_total{registry=\"alpha\",replica=\"westeurope\"}"),
        1,
        "{text}"
    );
    assert!(!text.contains("registry=\"beta\""), "{text}");

    put(&s, "gamma", &["storage"]).await.expect("put gamma");
    assert_eq!(answer(&s, "gamma").await, Ok((WEU.into(), 3)));
    // Every rule a catalog line must pass, with the reason.
    let bad = |name: &str, template: &str| RegistryRequest {
        name: name.into(),
        template: template.into(),
        depends_on: None,
        ttl: None,
        answers: None,
    };
    match put_request(&s, "x", bad("x.registry.example.", "nope")).await {
        Err(AdminError::NotFound(m)) => assert!(m.contains("no template nope"), "{m}"),
        other => panic!("{other:?}"),
    }
    match put_request(&s, "x", bad("www.registry.example.", "fleet")).await {
        Err(AdminError::BadRequest(m)) => assert!(m.contains("collides with a name"), "{m}"),
        other => panic!("{other:?}"),
    }
    match put_request(&s, "x", bad("ALPHA.registry.example.", "fleet")).await {
        Err(AdminError::BadRequest(m)) => {
            assert!(m.contains("also used by registry alpha"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match put_request(&s, "x", bad("x.example.org.", "fleet")).await {
        Err(AdminError::BadRequest(m)) => assert!(m.contains("not inside any served zone"), "{m}"),
        other => panic!("{other:?}"),
    }
    match put_request(&s, "bad key", bad("y.registry.example.", "fleet")).await {
        Err(AdminError::BadRequest(m)) => assert!(m.contains("key"), "{m}"),
        other => panic!("{other:?}"),
    }
    delete(&s, "beta").await.expect("delete beta");
    assert_eq!(answer(&s, "beta").await, Err(ResponseCode::NXDomain));
    assert!(matches!(
        delete(&s, "beta").await,
        Err(AdminError::NotFound(_))
    ));

    // The journal holds the two changes; a restart serves them.
    let journal = std::fs::read_to_string(s.dir().join("registries.csv.journal")).expect("journal");
    assert_eq!(journal.lines().count(), 2, "{journal}");
    let dir = s.stop_keep().await;
    let s = TestServer::start_in(dir, &cfg, &[], listen).await;
    assert_eq!(answer(&s, "gamma").await, Ok((WEU.into(), 3)));
    assert_eq!(answer(&s, "beta").await, Err(ResponseCode::NXDomain));
    assert_eq!(answer(&s, "alpha").await, Ok((WEU.into(), 3)));
    teardown(s, reps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_fault_moves_exactly_its_registries_and_catalog_changes_keep_health() {
    let reps = replicas(10).await;
    // Even registries on storage, odd ones on cache; all on auth.
    let lines: Vec<String> = (0..20)
        .map(|i| {
            let dep = if i % 2 == 0 { "storage" } else { "cache" };
            format!("r{i},r{i}.registry.example.,fleet,{dep};auth,,")
        })
        .collect();
    let s = start(&reps, &lines).await;
    first_round(&s).await;
    reps[0].fail("storage", Some("fleet"));
    wait_answer(&s, "r0", EUS).await;
    for i in 0..20 {
        let want = if i % 2 == 0 { EUS } else { WEU };
        assert_eq!(
            answer(&s, &format!("r{i}")).await.map(|a| a.0),
            Ok(want.into()),
            "r{i}"
        );
    }
    // A registry added on the failing account is judged at once on the key's state; one on
    // the healthy account is not touched; removing and re-adding another changes nobody.
    put(&s, "late", &["auth", "storage"]).await.expect("put");
    assert_eq!(answer(&s, "late").await.map(|a| a.0), Ok(EUS.into()));
    put(&s, "late2", &["cache"]).await.expect("put");
    assert_eq!(answer(&s, "late2").await.map(|a| a.0), Ok(WEU.into()));
    delete(&s, "r1").await.expect("delete");
    // On storage alone: a resource set nobody used before, judged at once on the recent
    // outcomes of the target (not `unknown` until three more probes).
    put(&s, "r1", &["storage"])
        .await
        .expect("put again, on storage now");
    assert_eq!(answer(&s, "r1").await.map(|a| a.0), Ok(EUS.into()));
    assert_eq!(answer(&s, "r0").await.map(|a| a.0), Ok(EUS.into()));
    assert_eq!(answer(&s, "r3").await.map(|a| a.0), Ok(WEU.into()));

    // The status API names exactly the degraded registries, and counts them.
    let v = status(
        &s,
        StatusQuery {
            state: Some(ReplicaState::Degraded),
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await
    .expect("status");
    let mut keys: Vec<&str> = v.registries.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    let mut want: Vec<String> = (0..20).step_by(2).map(|i| format!("r{i}")).collect();
    want.extend(["late".to_string(), "r1".to_string()]);
    want.sort();
    assert_eq!(keys, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v.summary.registries, 22);
    assert_eq!(v.summary.states.get(&ReplicaState::Degraded), Some(&12));
    assert_eq!(
        v.summary.states.get(&ReplicaState::Healthy),
        Some(&(22 * 3 - 12))
    );
    assert_eq!(
        v.summary.states.get(&ReplicaState::Unknown),
        None,
        "new resource sets are judged at once"
    );
    // Each registry shows the dependencies it is judged on, not the whole document.
    let r0 = v.registries.iter().find(|r| r.key == "r0").expect("r0");
    let weu = r0
        .replicas
        .iter()
        .find(|r| r.key == "westeurope")
        .expect("weu");
    let deps: Vec<&str> = weu.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["auth", "storage"], "{weu:?}");
    assert_eq!(weu.state, ReplicaState::Degraded);
    // Resources by (region, dependency), whatever the dependency sets: storage at
    // westeurope fails for the ten even ones, late and r1; auth there does not fail.
    // (late2 and the odd ones but r1 are on cache: ten.)
    let res = |region: &str, name: &str| {
        v.summary
            .resources
            .iter()
            .find(|r| r.region == region && r.resource == name)
            .cloned()
            .unwrap_or_else(|| panic!("{region}/{name}: {:?}", v.summary.resources))
    };
    let storage = res("westeurope", "storage");
    assert_eq!(storage.state, ReplicaState::Degraded);
    assert_eq!((storage.registries, storage.failing), (12, 12));
    assert_eq!(v.summary.resources[0], storage, "failing resources first");
    let auth = res("westeurope", "auth");
    assert_eq!((auth.state, auth.failing), (ReplicaState::Healthy, 0));
    assert_eq!(
        auth.registries, 20,
        "r0..r19 but r1 (re-added on storage alone), and late"
    );
    let cache = res("eastus", "cache");
    assert_eq!((cache.state, cache.registries), (ReplicaState::Healthy, 10));
    assert_eq!(
        v.summary.resources.len(),
        3 * 3,
        "3 regions x storage, cache, auth: {:?}",
        v.summary.resources
    );

    reps[0].recover(None, None);
    wait_answer(&s, "r0", WEU).await;
    wait_answer(&s, "late", WEU).await;
    teardown(s, reps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_sees_a_disabled_replica_while_registries_are_added_in_front() {
    let reps = replicas(20).await;
    // Registry m from the config file, registries of the catalog around it.
    let m = |prefix: &str| {
        let mut t = String::new();
        for ((region, addr), r) in steerdns::demo_replica::LAB_REGIONS.iter().zip(&reps) {
            t.push_str(&format!(
                "[registries.{prefix}m.replicas.{region}]\nipv4 = [\"{addr}\"]\nhealth.url = \"{}\"\n",
                r.health_url("m")
            ));
        }
        format!("[registries.{prefix}m]\nname = \"{prefix}m.registry.example.\"\n{t}")
    };
    let base = config(&reps, &m(""));
    let text = catalog(&["z,z.registry.example.,fleet,,,".into()]);
    let s = TestServer::start_with(
        &base,
        &[("registries.csv", &text)],
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    first_round(&s).await;
    ask(&s, |reply| Command::Override {
        command: OverrideCommand {
            action: OverrideAction::Disable,
            target: Target::Replica {
                registry: "m".into(),
                replica: "westeurope".into(),
            },
            reason: "maintenance".into(),
            who: "test".into(),
            duration: None,
        },
        reply,
    })
    .await
    .expect("disable");
    assert_eq!(answer(&s, "m").await.map(|a| a.0), Ok(EUS.into()));

    // Ask for m as fast as one socket goes while registries are added in front of it.
    let stop = tokio_util::sync::CancellationToken::new();
    let asker = {
        let stop = stop.clone();
        let addr = s.addr;
        tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind((CLIENT_WEU, 0))
                .await
                .expect("bind");
            let q = query("m.registry.example.", RecordType::A, None)
                .to_vec()
                .expect("query");
            let (mut asked, mut wrong, mut other) = (0u32, 0u32, 0u32);
            let mut buf = [0u8; 512];
            while !stop.is_cancelled() {
                sock.send_to(&q, addr).await.expect("send");
                let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
                else {
                    other += 1;
                    continue;
                };
                asked += 1;
                let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("reply");
                match m.answers.first().map(|r| &r.data) {
                    Some(RData::A(a)) if a.to_string() == WEU => wrong += 1,
                    Some(RData::A(_)) => {}
                    _ => other += 1,
                }
            }
            (asked, wrong, other)
        })
    };
    for i in 0..5 {
        // A config registry whose key sorts first, then a reload...
        let prefix: String = (0..=i).map(|_| "a").collect();
        let mut cfg = base.clone();
        for j in 0..=i {
            let p: String = (0..=j).map(|_| "a").collect();
            cfg.push_str(&m(&p));
        }
        std::fs::write(s.dir().join("steerdns.toml"), &cfg).expect("rewrite config");
        ask(&s, |reply| Command::Reload {
            who: "test".into(),
            reply,
        })
        .await
        .unwrap_or_else(|e| panic!("reload {prefix}: {e}"));
        // ...and catalog registries in front of it.
        for j in 0..4 {
            put(&s, &format!("a{i}{j}"), &[]).await.expect("put");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let (asked, wrong, other) = asker.await.expect("asker");
    assert!(asked > 50, "only {asked} answers");
    assert_eq!((wrong, other), (0, 0), "of {asked} answers");
    assert_eq!(answer(&s, "aaam").await.map(|a| a.0), Ok(WEU.into()));
    teardown(s, reps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pages_filter_and_summarise() {
    let reps = replicas(30).await;
    let lines: Vec<String> = (0..250)
        .map(|i| format!("k{i:03},k{i:03}.registry.example.,fleet,storage,,"))
        .collect();
    let s = start(&reps, &lines).await;
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let v = status(
            &s,
            StatusQuery {
                after: after.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("page");
        pages += 1;
        assert!(v.registries.len() <= 100);
        assert_eq!(v.summary.registries, 250);
        seen.extend(v.registries.iter().map(|r| r.key.clone()));
        match v.next {
            Some(n) => {
                assert_eq!(Some(&n), seen.last());
                after = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..250).map(|i| format!("k{i:03}")).collect();
    assert_eq!(seen, want);
    let one = status(
        &s,
        StatusQuery {
            registry: Some("k042".into()),
            ..Default::default()
        },
    )
    .await
    .expect("one");
    assert_eq!(one.registries.len(), 1);
    assert_eq!(one.registries[0].name, "k042.registry.example.");
    assert_eq!(one.registries[0].replicas.len(), 3);
    assert!(matches!(
        status(
            &s,
            StatusQuery {
                registry: Some("nope".into()),
                ..Default::default()
            }
        )
        .await,
        Err(AdminError::NotFound(_))
    ));
    let big = status(
        &s,
        StatusQuery {
            limit: Some(5000),
            ..Default::default()
        },
    )
    .await
    .expect("big");
    assert_eq!(big.registries.len(), 250);
    assert_eq!(big.summary.regions.len(), 3);
    teardown(s, reps).await;
}

#[test]
fn catalog_problems_name_the_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = "[templates.fleet.replicas.westeurope]\nipv4 = [\"192.0.2.1\"]\n";
    let text = demo_config(&format!(
        "[regions.westeurope]\n[catalog]\nfile = \"registries.csv\"\n{cfg}"
    ));
    std::fs::write(dir.path().join("steerdns.toml"), text).expect("config");
    let write = |text: &str| {
        std::fs::write(dir.path().join("registries.csv"), text).expect("catalog");
        steerdns::state::Snapshot::load(&dir.path().join("steerdns.toml"))
            .expect_err("bad catalog")
            .to_string()
    };
    let file = dir.path().join("registries.csv");
    let file = file.display();
    // The file's own rules first, every line that breaks one...
    let e = write(
        "key,name,template,depends_on,ttl,answers\n\
         a,a.registry.example.,fleet,,,\n\
         d,d.registry.example.,fleet,,2h,\n\
         e,e.registry.example.,fleet,,,9\n",
    );
    assert!(e.contains(&format!("{file}:3: field ttl")), "{e}");
    assert!(e.contains(&format!("{file}:4: field answers")), "{e}");
    // ...then the registry rules, against templates and zones.
    let e = write(
        "key,name,template,depends_on,ttl,answers\n\
         a,a.registry.example.,fleet,,,\n\
         b,b.registry.example.,other,,,\n\
         c,www.registry.example.,fleet,,,\n",
    );
    assert!(e.contains(&format!("{file}:3: template \"other\"")), "{e}");
    assert!(
        e.contains(&format!(
            "{file}:4: registry c: global name www.registry.example. collides"
        )),
        "{e}"
    );
}
