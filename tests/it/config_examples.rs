//! Every example config in the repository parses, and a typo (an unknown key) in any of its
//! tables is rejected — a mutation test of `deny_unknown_fields` (after hickory-dns'
//! `test_reject_unknown_fields`).

use std::path::{Path, PathBuf};

use steerdns::config::Config;
use steerdns::state::Snapshot;

use crate::support::repo;

/// The example configs: the default one and everything under `examples/`.
fn examples() -> Vec<PathBuf> {
    let mut files = vec![repo().join("steerdns.toml")];
    for dir in ["examples", "tests/fixtures"] {
        if let Ok(entries) = std::fs::read_dir(repo().join(dir)) {
            files.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml")),
            );
        }
    }
    files
}

#[test]
fn every_example_config_loads_with_its_zones() {
    for file in examples() {
        if let Err(e) = Snapshot::load(&file) {
            panic!("{} does not load:\n{e}", file.display());
        }
    }
}

/// Paths (as key lists) of every table in a TOML document, the root included.
fn tables(value: &toml::Table, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for (k, v) in value {
        if let toml::Value::Table(t) = v {
            let mut p = prefix.clone();
            p.push(k.clone());
            tables(t, p, out);
        }
    }
}

fn table_at<'a>(doc: &'a mut toml::Table, path: &[String]) -> &'a mut toml::Table {
    let mut t = doc;
    for k in path {
        t = match t.get_mut(k) {
            Some(toml::Value::Table(x)) => x,
            _ => unreachable!("path comes from the document"),
        };
    }
    t
}

/// Tables whose keys are names chosen by the operator.
const MAP_TABLES: &[&str] = &["regions", "registries", "replicas", "headers"];

#[test]
fn unknown_keys_are_rejected_in_every_table() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).expect("read");
        let doc: toml::Table = toml::from_str(&text).expect("toml");
        let mut paths = Vec::new();
        tables(&doc, Vec::new(), &mut paths);
        assert!(
            paths.len() > 5,
            "{}: expected a config with many tables",
            file.display()
        );
        for path in paths {
            // Tables keyed by the operator's names (regions, registries, replicas, headers)
            // take any key; the tables inside them are checked.
            if path
                .last()
                .is_some_and(|k| MAP_TABLES.contains(&k.as_str()))
            {
                continue;
            }
            let mut mutated = doc.clone();
            table_at(&mut mutated, &path).insert("no_such_key".into(), toml::Value::Integer(1));
            let text = toml::to_string(&mutated).expect("serialise");
            let err = Config::from_toml(&text, Path::new("mutated.toml")).expect_err(&format!(
                "{}: unknown key in [{}] must be rejected",
                file.display(),
                path.join(".")
            ));
            assert!(
                err.to_string().contains("no_such_key"),
                "{}: [{}]: the error names the key: {err}",
                file.display(),
                path.join(".")
            );
        }
    }
}
