//! A bundle is judged by the raw `iptables-save` dumps it holds: a person
//! can put a real dump (with or without `-c` counters) in place of the
//! collected one, and a dump that does not parse is an error finding that
//! names the line, never "healthy". Root-free: the seed lab's objects and
//! k8s-node-12's state and rules as fixtures.

mod common;
use common::*;

use std::path::{Path, PathBuf};

const NODE: &str = "k8s-node-12";
const DUMP: &str = include_str!("fixtures/iptables/seed-node-12.nft.save");

/// A bundle of the seed cluster and k8s-node-12, its nft dump `dump`.
fn bundle(dump: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::create_dir_all(root.join("cluster")).unwrap();
    std::fs::create_dir_all(root.join("nodes").join(NODE)).unwrap();
    std::fs::copy(
        fixtures.join("kubectl/v1.20-get/all.json"),
        root.join("cluster/all.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("nodestate/seed-k8s-node-12.json"),
        root.join("nodes").join(NODE).join("state.json"),
    )
    .unwrap();
    std::fs::write(
        root.join("nodes").join(NODE).join("iptables-nft.save"),
        dump,
    )
    .unwrap();
    (d, root)
}

fn check(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = kd(&[
        "check",
        "--bundle",
        dir.to_str().unwrap(),
        "--node",
        NODE,
        "-o",
        "json",
    ]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .or_else(|| v["findings"].as_array())
        .unwrap_or_else(|| panic!("no findings in {v}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_collected_dump_is_healthy_and_so_is_it_with_counters() {
    let (_d, dir) = bundle(DUMP);
    let (code, v) = check(&dir);
    assert_eq!((code, ids(&v)), (Some(0), vec![]), "{v:#}");
    let counted: String = DUMP
        .lines()
        .map(|l| {
            if l.starts_with("-A ") {
                format!("[3:180] {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let (_d, dir) = bundle(&counted);
    let (code, v) = check(&dir);
    assert_eq!((code, ids(&v)), (Some(0), vec![]), "{v:#}");
}

#[test]
fn a_dump_that_does_not_parse_is_an_error_naming_the_line() {
    let lines: Vec<&str> = DUMP.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("-A KUBE-SERVICES"))
        .unwrap();
    let broken: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == at {
                format!("{l} -m comment --comment \"torn\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let (_d, dir) = bundle(&broken);
    let (code, v) = check(&dir);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(ids(&v), ["node-state-unreadable"], "{v:#}");
    let summary = v.as_array().or_else(|| v["findings"].as_array()).unwrap()[0]["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(summary.contains(&format!("line {}", at + 1)), "{summary}");
    assert!(summary.contains("iptables-nft"), "{summary}");
}

#[test]
fn the_raw_dump_is_what_is_judged() {
    // A Service chain taken out of the dump (state.json still has it).
    let chain = DUMP
        .lines()
        .find_map(|l| {
            l.strip_prefix("-A KUBE-SERVICES ")
                .and_then(|r| r.split(" -j ").nth(1))
                .filter(|t| t.starts_with("KUBE-SVC-"))
        })
        .unwrap()
        .trim()
        .to_string();
    let without: String = DUMP
        .lines()
        .filter(|l| !l.contains(&chain))
        .map(|l| format!("{l}\n"))
        .collect();
    let (_d, dir) = bundle(&without);
    let (code, v) = check(&dir);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        ids(&v).iter().any(|i| i == "kube-proxy-svc-chain-missing"),
        "{v:#}"
    );
}
