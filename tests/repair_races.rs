//! `repair` under races, kills and failures, on the lab, made deterministic
//! with the test build's pause points (`KNETDOCTOR_TEST_PAUSE=POINT:FILE`
//! stops the repair at POINT until the test removes FILE): a repair holds
//! the node's lock from before it reads the node, a stale plan is refused,
//! a repair killed part-way shows what the kernel received, an undo that
//! fails part-way is journaled and can be finished, and everything it keeps
//! on disk is private whatever the umask.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "k8s-node-12";

/// A repair started in the background that stops at `point`.
struct Paused {
    child: Child,
    file: PathBuf,
}

impl Paused {
    fn start(lab: &str, point: &str, extra: &[&str]) -> Paused {
        let file = std::env::temp_dir().join(format!(
            "kd-pause-{}-{lab}-{}",
            std::process::id(),
            point.replace('/', "_")
        ));
        let _ = std::fs::remove_file(&file);
        let child = Command::new(BIN)
            .args(["repair", "--node", NODE, "--lab", lab])
            .args(extra)
            .env(
                "KNETDOCTOR_TEST_PAUSE",
                format!("{point}:{}", file.display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start knetdoctor");
        let p = Paused { child, file };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.file.exists() {
            assert!(
                Instant::now() < deadline,
                "the repair never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    /// Lets it go on and waits for it.
    fn resume(mut self) -> std::process::Output {
        let _ = std::fs::remove_file(&self.file);
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repair(lab: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["repair", "--node", NODE, "--lab", lab];
    a.extend_from_slice(extra);
    kd(&a)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn journal_dir(lab: &str) -> PathBuf {
    std::env::var_os("KNETDOCTOR_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/knetdoctor"))
        .join("lab")
        .join(lab)
        .join("repair")
        .join(NODE)
}

fn route_to_master(node_ns: &str) -> String {
    in_ns_text(node_ns, &["ip", "-4", "route", "show", "10.2.0.0/24"]).1
}

/// The race the lock closes: a repair that read the node before another
/// one fixed it must not journal the old broken state and "apply" it —
/// its undo would break the healthy node again. Here the first repair
/// holds the lock from before it reads; a second is refused; and when the
/// node is fixed behind the first one's back (flanneld, a person), the
/// first refuses its stale plan and changes nothing.
#[test]
fn a_repair_locks_before_it_reads_and_refuses_a_stale_plan() {
    let lab = Lab::up("race", &[]);
    let node = lab.node(NODE);
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    assert!(route_to_master(&node).trim().is_empty());

    let first = Paused::start("race", "planned", &["--apply", "--yes"]);
    let pid = first.child.id();
    let second = repair("race", &["--apply", "--yes"]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(
        text(&second).contains(&format!(
            "another repair of this node is running (process {pid})"
        )),
        "{}",
        text(&second)
    );

    // The node is fixed while the first repair waits with its plan.
    lab.kd(&["lab", "heal"]);
    let healed = route_to_master(&node);
    assert!(
        healed.contains("via 10.2.0.0 dev flannel.1 onlink"),
        "{healed}"
    );
    let out = first.resume();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("changed since the plan was made"),
        "{}",
        text(&out)
    );
    // Nothing journaled, nothing to undo, the node as healthy as it was.
    let history = text(&repair("race", &["--history"]));
    assert!(history.contains("no repairs of"), "{history}");
    assert_eq!(route_to_master(&node), healed);
}

/// A repair killed before it sent anything, and one killed after its
/// second of three changes, as `--history` shows them: what the kernel
/// really received, and that the repair was interrupted.
#[test]
fn a_killed_repair_shows_what_the_kernel_received() {
    let lab = Lab::up("killed", &[]);
    for f in ["vtep-mtu", "ip-forward-off", "cni0-addr-wrong"] {
        lab.kd(&["lab", "break", f, "--node", NODE]);
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&repair("killed", &["-o", "json"]).stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 3, "{plan:#}");

    Paused::start("killed", "journaled", &["--apply", "--yes"]).kill();
    let history = text(&repair("killed", &["--history"]));
    assert!(
        history.contains("interrupted (its process died): 0 of 3 action(s) made, 3 not sent"),
        "{history}"
    );

    Paused::start("killed", "made-1", &["--apply", "--yes"]).kill();
    let history = text(&repair("killed", &["--history"]));
    let last = history.lines().last().unwrap();
    assert!(
        last.contains("interrupted (its process died): 1 of 3 action(s) made, 1 sent without a recorded answer, 1 not sent"),
        "{history}"
    );
    // Its undo puts back both changes that may have been made.
    let id = last.split_whitespace().next().unwrap();
    let out = repair("killed", &["--undo", id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 change(s) put back"),
        "{}",
        text(&out)
    );

    // A journal that cannot be read is listed, not skipped.
    let dir = journal_dir("killed");
    std::fs::write(dir.join("01764570000123456789-1.json"), b"{torn").unwrap();
    let history = text(&repair("killed", &["--history"]));
    assert!(
        history.contains("01764570000123456789-1  unreadable: "),
        "{history}"
    );
}

/// An undo whose second restore the kernel refuses stops there, says what
/// it put back, is shown partly undone, and `--undo` again finishes it once
/// the cause is gone.
#[test]
fn an_undo_that_fails_part_way_is_journaled_and_can_be_finished() {
    let lab = Lab::up("undofail", &[]);
    let node = lab.node(NODE);
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    lab.kd(&["lab", "break", "pod-veth-down", "--node", NODE]);
    let plan: serde_json::Value =
        serde_json::from_slice(&repair("undofail", &["-o", "json"]).stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{plan:#}");
    let veth = steps
        .iter()
        .find_map(|s| {
            s["action"]["dev"]
                .as_str()
                .filter(|d| d.starts_with("veth"))
        })
        .unwrap_or_else(|| panic!("no veth in {plan:#}"))
        .to_string();
    let out = repair("undofail", &["--apply", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let history = text(&repair("undofail", &["--history"]));
    let id = history
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    // The route (the newest change: links come first in the plan) is
    // undone first; then the veth, which is no longer there by its name.
    let ip = |argv: &[&str]| assert!(in_ns(&node, argv).status.success(), "{argv:?}");
    ip(&["ip", "link", "set", &veth, "down"]);
    ip(&["ip", "link", "set", &veth, "name", "kdmoved0"]);
    let out = repair("undofail", &["--undo", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "undo of repair {id} stopped: 1 change(s) put back, 1 left"
        )),
        "{said}"
    );
    assert!(
        said.contains("put back: ip route replace 10.2.0.0/24"),
        "{said}"
    );
    assert!(
        said.contains(&format!("refused: ip link set {veth} up")),
        "{said}"
    );
    assert!(
        said.contains(&format!("--undo {id}` puts back the rest")),
        "{said}"
    );
    let history = text(&repair("undofail", &["--history"]));
    assert!(
        history.contains("partly undone: 1 of 2 put back, refused: "),
        "{history}"
    );
    assert!(
        route_to_master(&node).trim().is_empty(),
        "the route was not put back"
    );

    // With the veth back under its name, the undo finishes.
    ip(&["ip", "link", "set", "kdmoved0", "name", &veth]);
    let out = repair("undofail", &["--undo", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("undone: 2 change(s) put back"),
        "{}",
        text(&out)
    );
    let history = text(&repair("undofail", &["--history"]));
    assert!(
        history.contains(&format!("{id}  undone: 2 change(s) put back")),
        "{history}"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o777
}

/// Journals, the lock, the lab's state and its generated configs are
/// private (0600 files, 0700 directories) with a umask of 000.
#[test]
fn what_root_reads_back_is_private_whatever_the_umask() {
    let lab = Lab::up("modes", &[]);
    let umask0 = |args: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!("umask 000; exec {BIN} {args}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", text(&out));
    };
    umask0(&format!(
        "lab break route-missing --node {NODE} --name modes"
    ));
    umask0("lab break ingress-backend-port --name modes");
    umask0(&format!("repair --node {NODE} --lab modes --apply --yes"));
    let dir = journal_dir("modes");
    let labdir = dir.parent().unwrap().parent().unwrap();
    assert_eq!(mode(labdir), 0o700);
    assert_eq!(mode(&labdir.join("state.json")), 0o600);
    assert_eq!(mode(&labdir.join("ingress/nginx.conf")), 0o600);
    assert_eq!(mode(&labdir.join("dns/hosts")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    let journals: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(journals.len(), 1);
    assert_eq!(mode(&journals[0]), 0o600);
    // The lab still answers through its private files.
    lab.kd(&["lab", "heal"]);
    assert!(
        !dig(
            &lab.pod(BUSYBOX),
            "linux0224-nginx.test-svc-ns.svc.cluster.local"
        )
        .is_empty()
    );
}
