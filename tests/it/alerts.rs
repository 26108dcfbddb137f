//! The operator's files: `docs/alerts.yml` passes `promtool check rules` and its unit tests
//! (`docs/alerts.test.yml`); every query of `docs/grafana-dashboard.json` parses (promtool
//! checks them as recording rules); and every `steerdns_*` series either file names is one a
//! running server exports (a scrape of a real server with a webhook; the `[fleet]` families
//! from the metrics source).
//!
//! Needs `promtool` (Debian package `prometheus`). Without it the test says so and passes,
//! unless `STEERDNS_REQUIRE_PROMTOOL=1`, when it fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const PROMTOOL: &str = "/usr/bin/promtool";

fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `steerdns_*` names in `text`, without the OpenMetrics sample suffixes.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("steerdns_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut n = &tail[..end];
        for suffix in ["_total", "_bucket", "_sum", "_count"] {
            n = n.strip_suffix(suffix).unwrap_or(n);
        }
        out.insert(n.to_string());
        rest = &tail[end..];
    }
    out
}

/// The dashboard's PromQL expressions (panel targets and annotations).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|x| dashboard_exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_check_and_name_real_series() {
    if !Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_PROMTOOL").is_none(),
            "{PROMTOOL} is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: {PROMTOOL} is missing (apt-get install prometheus)");
        return;
    }
    let docs = repo().join("docs");
    promtool(&docs, &["check", "rules", "alerts.yml"]);
    promtool(&docs, &["test", "rules", "alerts.test.yml"]);

    let text = std::fs::read_to_string(docs.join("grafana-dashboard.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let dir = tempfile::tempdir().expect("tmp");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("quoted")
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).expect("write");
    promtool(dir.path(), &["check", "rules", "dashboard.yml"]);

    // The series a running server exports (a webhook configured, so its families exist).
    std::fs::write(dir.path().join("hook.secret"), "x\n").expect("secret");
    let config = demo_config(
        "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"hook.secret\"\n",
    );
    let s = TestServer::start_with_admin_files(&config, &[("hook.secret", "x\n")]).await;
    let admin = s.handles.admin.expect("admin");
    let scrape = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    s.stop().await;
    let exported = names(
        &scrape
            .lines()
            .filter(|l| l.starts_with("# TYPE "))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // Families without series yet (no reload failed, no incident open, no [fleet]) are not
    // in a scrape: the names the metrics module registers complete the set, and everything
    // scraped is one of them.
    let mut registered = BTreeSet::new();
    for f in ["mod.rs", "fleet.rs", "hot.rs", "collect.rs"] {
        let src = std::fs::read_to_string(repo().join("src/metrics").join(f)).expect("source");
        for line in src
            .lines()
            .filter(|l| l.contains("const ") && l.contains("&str = \"steerdns_"))
        {
            registered.extend(names(line));
        }
    }
    assert!(
        exported.is_subset(&registered),
        "scraped but not registered: {:?}",
        exported.difference(&registered).collect::<Vec<_>>()
    );
    assert!(exported.len() >= 20, "{exported:?}");
    let exported = registered;
    let alerts = std::fs::read_to_string(docs.join("alerts.yml")).expect("alerts");
    for (file, used) in [
        ("alerts.yml", names(&alerts)),
        ("grafana-dashboard.json", names(&text)),
    ] {
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names series no server exports: {unknown:?}\nexported: {exported:?}"
        );
    }
}
