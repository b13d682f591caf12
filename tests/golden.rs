//! Golden outputs, root-free: `check`, `trace`, `inspect svc|pod` and the
//! `repair` plan on bundles collected from the seed lab (healthy, with
//! dataplane faults, with cluster faults), in text and JSON, pinned byte
//! for byte. A change that alters any of them shows here; when it is
//! meant, `KD_BLESS=1 cargo test --test golden` writes the new outputs and
//! the diff is reviewed like code. The bundles and what made them:
//! tests/fixtures/README.md.

mod common;
use common::*;

use std::path::{Path, PathBuf};

const BUNDLES: [&str; 3] = ["healthy", "dataplane-faults", "cluster-faults"];
const BUSYBOX_POD: &str = "test-net/busybox-deployment-5db9ff768-zrlxw";

/// (file stem, arguments after the bundle's).
fn commands() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("check", vec!["check"]),
        (
            "trace-pod-to-pod",
            vec!["trace", BUSYBOX_POD, "test-svc-ns/nginx-56d58c56c7-zl6ms"],
        ),
        (
            "trace-pod-to-service",
            vec!["trace", BUSYBOX_POD, "test-svc-ns/linux0224-nginx"],
        ),
        (
            "trace-pod-to-dns-name",
            vec!["trace", BUSYBOX_POD, "linux0224-nginx.test-svc-ns"],
        ),
        (
            "trace-outside-to-nodeport",
            vec!["trace", "192.168.56.254", "k8s-node-12:30005"],
        ),
        (
            "inspect-svc",
            vec!["inspect", "svc", "test-svc-ns/linux0224-nginx"],
        ),
        ("inspect-pod", vec!["inspect", "pod", BUSYBOX_POD]),
        ("repair-plan", vec!["repair", "--node", "k8s-node-12"]),
        (
            "repair-plan-kube-proxy",
            vec!["repair", "--node", "k8s-node-12", "--include", "kube-proxy"],
        ),
    ]
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn outputs_on_the_bundles_are_as_pinned() {
    let bless = std::env::var_os("KD_BLESS").is_some();
    let mut differ = Vec::new();
    for bundle in BUNDLES {
        let dir = root().join("bundles").join(bundle);
        for (stem, args) in commands() {
            for format in ["text", "json"] {
                let mut a: Vec<&str> = args.clone();
                let d = dir.to_str().unwrap().to_string();
                a.extend(["--bundle", &d, "-o", format]);
                let out = kd(&a);
                let got = format!(
                    "exit {:?}\n{}{}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
                // The bundle's place on this machine is not part of the answer.
                .replace(&d, "BUNDLE");
                let path = root().join("golden").join(bundle).join(format!(
                    "{stem}.{}",
                    if format == "json" { "json" } else { "txt" }
                ));
                if bless {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &got).unwrap();
                }
                let want = std::fs::read_to_string(&path).unwrap_or_default();
                if got != want {
                    differ.push(format!("{} differs:\n{got}", path.display()));
                }
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} golden output(s) differ (KD_BLESS=1 rewrites them):\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// `-o yaml` is the `-o json` document, field for field, with the same
/// exit code, for every pinned command on every bundle.
#[test]
fn yaml_is_the_json_document() {
    let mut compared = 0;
    for bundle in BUNDLES {
        let d = root().join("bundles").join(bundle);
        let d = d.to_str().unwrap();
        for (stem, args) in commands() {
            let run = |format: &str| {
                let mut a: Vec<&str> = args.clone();
                a.extend(["--bundle", d, "-o", format]);
                kd(&a)
            };
            let (json, yaml) = (run("json"), run("yaml"));
            assert_eq!(json.status.code(), yaml.status.code(), "{bundle} {stem}");
            let j: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
            let y: serde_json::Value = serde_yaml_ng::from_slice(&yaml.stdout)
                .unwrap_or_else(|e| panic!("{bundle} {stem}: {e}"));
            assert_eq!(j, y, "{bundle} {stem}");
            compared += 1;
        }
    }
    assert_eq!(compared, BUNDLES.len() * commands().len());
}

/// `check -n NS` (kubectl's -n) keeps the findings that name an object of
/// NS and counts the rest; `-A` is every finding, as without either.
#[test]
fn check_in_one_namespace_keeps_its_findings_and_counts_the_rest() {
    let d = root().join("bundles").join("cluster-faults");
    let d = d.to_str().unwrap();
    let doc = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["check", "--bundle", d, "-o", "json"];
        a.extend_from_slice(extra);
        serde_json::from_slice(&kd(&a).stdout).unwrap()
    };
    let all = doc(&[]);
    assert_eq!(doc(&["-A"]), all);
    let total = all["findings"].as_array().unwrap().len();
    for ns in ["kube-system", "test-svc-ns", "nowhere"] {
        let one = doc(&["-n", ns]);
        let kept = one["findings"].as_array().unwrap();
        for f in kept {
            assert!(
                f["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["namespace"] == ns),
                "{ns}: {f}"
            );
        }
        assert_eq!(
            kept.len() + one["outside_namespace"].as_u64().unwrap() as usize,
            total
        );
    }
    let one = doc(&["-n", "kube-system"]);
    assert_eq!(one["findings"][0]["id"], "kube-dns-no-endpoints");
    // Exit 0 when the namespace is clean, whatever the others hold.
    let clean = kd(&["check", "--bundle", d, "-n", "nowhere"]);
    assert_eq!(clean.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("-A shows them"));
}

/// `check -o wide` is one line a finding under a header, in the order and
/// with the ids, nodes and expected/actual values of the JSON document,
/// then the text's summary line.
#[test]
fn check_wide_is_a_line_a_finding() {
    for bundle in BUNDLES {
        let d = root().join("bundles").join(bundle);
        let d = d.to_str().unwrap();
        let wide = kd(&["check", "--bundle", d, "-o", "wide"]);
        let json = kd(&["check", "--bundle", d, "-o", "json"]);
        assert_eq!(wide.status.code(), json.status.code());
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let findings = doc["findings"].as_array().unwrap();
        let text = String::from_utf8_lossy(&wide.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        let rows = if findings.is_empty() {
            &lines[..0]
        } else {
            assert!(lines[0].starts_with("SEVERITY"), "{text}");
            &lines[1..=findings.len()]
        };
        for (row, f) in rows.iter().zip(findings) {
            let cells: Vec<&str> = row
                .split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            assert_eq!(cells[1], f["id"].as_str().unwrap(), "{row}");
            assert_eq!(cells[2], f["node"].as_str().unwrap_or("cluster"), "{row}");
            if let Some(e) = f["expected"].as_str() {
                assert!(row.contains(e), "{row}");
            }
        }
        let last = lines.last().unwrap();
        assert!(
            last.contains("finding(s)") || last.starts_with("healthy"),
            "{text}"
        );
    }
}
