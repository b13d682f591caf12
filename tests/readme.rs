//! The README's pictures are the real program's: the dashboard's overview
//! and a trace, both on the `dataplane-faults` bundle collected from the
//! seed lab (tests/fixtures/README.md), rendered here and compared with the
//! blocks between the README's `<!-- NAME:begin -->` and `<!-- NAME:end -->`
//! markers. When the program's output changes, this fails;
//! `KD_BLESS=1 cargo test --test readme` writes the new blocks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use knetdoctor::access::ReadVia;
use knetdoctor::tui::app::App;
use knetdoctor::tui::snapshot::{Reading, Snapshot};

fn bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles/dataplane-faults")
}

/// The overview as a 150x16 terminal shows it.
fn dashboard() -> String {
    let dir = bundle();
    let cluster = knetdoctor::inspect::bundle::read_cluster(&dir).unwrap();
    let states: Vec<_> = knetdoctor::inspect::bundle::node_names(&dir)
        .unwrap()
        .into_iter()
        .map(|n| {
            let s = knetdoctor::inspect::bundle::read_node(&dir, &n).unwrap();
            (n, s)
        })
        .collect();
    let findings = knetdoctor::check::run(&cluster, &states);
    let reading = Reading {
        // A fixed time: the picture must not change with the clock.
        at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(10 * 3600),
        via: states
            .iter()
            .map(|(n, _)| (n.clone(), ReadVia::Bundle))
            .collect(),
        not_read: Default::default(),
    };
    let s = Snapshot::build(
        format!("bundle {}", "dataplane-faults"),
        Arc::new(cluster),
        Arc::new(states),
        findings,
    )
    .with_reading(&reading);
    let mut app = App::new();
    app.snapshot = Some(Arc::new(s));
    knetdoctor::tui::view::to_text(&app, 150, 16)
}

/// `knetdoctor trace` from the busybox pod on k8s-node-12 to an nginx pod
/// on k8s-master-10, as the command prints it.
fn trace() -> String {
    let from = "test-net/busybox-deployment-5db9ff768-zrlxw";
    let to = "test-svc-ns/nginx-56d58c56c7-zl6ms";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knetdoctor"))
        .args(["trace", "--bundle"])
        .arg(bundle())
        .args([from, to])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the trace finds the drop");
    format!(
        "$ knetdoctor trace --bundle tests/fixtures/bundles/dataplane-faults {from} {to}\n{}",
        String::from_utf8(out.stdout).unwrap().trim_end()
    )
}

/// The README with block `name` replaced by `text` (fenced).
fn with_block(readme: &str, name: &str, text: &str) -> String {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let a = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md has no {begin:?}"))
        + begin.len();
    let b = readme[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md has no {end:?}"))
        + a;
    format!("{}```text\n{text}\n```\n{}", &readme[..a], &readme[b..])
}

#[test]
fn the_readme_pictures_are_what_the_program_shows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let want = with_block(
        &with_block(&readme, "dashboard", &dashboard()),
        "trace",
        &trace(),
    );
    if std::env::var_os("KD_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        readme == want,
        "README.md's dashboard or trace block differs from what the program shows now; \
         `KD_BLESS=1 cargo test --test readme` rewrites them:\n{want}"
    );
}
