//! knetdoctor in the kubectl world and in the shell: run by Debian's real
//! kubectl (1.20, kubernetes-client) as `kubectl knetdoctor`; its completer
//! answering kubectl's plugin-completion protocol (and through the
//! machine's own kubectl when it is 1.26 or later, which calls it); bash
//! completing commands, fault names and a lab's nodes and pods; a man page
//! for every command that man(1) renders; a spinner on a terminal for what
//! takes over a second, and none in a pipe.

mod common;
use common::probe_cases::{PROBE_BB, PROBE_MASTER};
use common::tmux::Tmux;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

/// Debian's kubectl, unpacked by scripts/setup.sh.
const DEBIAN_KUBECTL: &str = "/var/cache/knetdoctor/kubernetes-client/usr/bin/kubectl";
const LAB: &str = "cmpl";

/// A directory holding knetdoctor under the two names kubectl looks for.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["kubectl-knetdoctor", "kubectl_complete-knetdoctor"] {
        std::os::unix::fs::symlink(BIN, dir.path().join(name)).unwrap();
    }
    dir
}

/// `kubectl ARGS` with the plugins of `dir` on its PATH.
fn kubectl(kubectl: &str, dir: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(kubectl)
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn debians_kubectl_runs_knetdoctor_as_its_plugin() {
    let dir = plugin_dir();
    let listed = kubectl(DEBIAN_KUBECTL, dir.path(), &["plugin", "list"]);
    assert!(
        stdout(&listed).contains("kubectl-knetdoctor"),
        "{}{}",
        stdout(&listed),
        String::from_utf8_lossy(&listed.stderr)
    );
    // Help names the form it was called by.
    let help = kubectl(DEBIAN_KUBECTL, dir.path(), &["knetdoctor", "--help"]);
    assert!(help.status.success());
    assert!(
        stdout(&help).contains("Usage: kubectl knetdoctor [COMMAND]"),
        "{}",
        stdout(&help)
    );
    let sub = kubectl(
        DEBIAN_KUBECTL,
        dir.path(),
        &["knetdoctor", "lab", "break", "--help"],
    );
    assert!(
        stdout(&sub).contains("Usage: kubectl knetdoctor lab break"),
        "{}",
        stdout(&sub)
    );
    // The same answers as the binary called by its own name.
    let faults = kubectl(
        DEBIAN_KUBECTL,
        dir.path(),
        &["knetdoctor", "lab", "break", "--list"],
    );
    assert_eq!(stdout(&faults), kd_ok(&["lab", "break", "--list"]));
    // Exit codes pass through kubectl: a usage error is 2.
    let bad = kubectl(DEBIAN_KUBECTL, dir.path(), &["knetdoctor", "trace", "a"]);
    assert_eq!(bad.status.code(), Some(2));
    // kubectl's flags reach the plugin: this kubeconfig is the one read.
    let live = kubectl(
        DEBIAN_KUBECTL,
        dir.path(),
        &[
            "knetdoctor",
            "check",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    );
    let err = String::from_utf8_lossy(&live.stderr);
    assert_ne!(live.status.code(), Some(0));
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
}

/// The completer's answer for `kubectl knetdoctor ARGS`, as kubectl reads
/// it: the candidates, and the directive.
fn complete(dir: &Path, args: &[&str]) -> (Vec<String>, String) {
    let out = Command::new(dir.join("kubectl_complete-knetdoctor"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    let directive = lines.pop().unwrap_or_default();
    (lines, directive)
}

/// bash's candidates for the command line `words` (the last one being
/// completed), through the registration `completion bash` prints.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = kd_ok(&["completion", "bash"]);
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prev = if words.len() > 1 {
        words[words.len() - 2]
    } else {
        ""
    };
    let program = format!(
        "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; COMP_TYPE=9; _clap_complete_knetdoctor knetdoctor '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1,
        words.last().unwrap()
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn completion_names_commands_faults_and_the_labs_nodes_and_pods() {
    let lab = Lab::up(LAB, &[]);
    let dir = plugin_dir();
    // kubectl's protocol: candidates with their help, then `:4` (no
    // file names).
    let (commands, directive) = complete(dir.path(), &["dr"]);
    assert_eq!(directive, ":4");
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(commands[0].starts_with("drops\t"), "{commands:?}");
    let (faults, _) = complete(dir.path(), &["lab", "break", "route-"]);
    assert_eq!(faults, ["route-missing", "route-wrong-gw"]);
    let (nodes, _) = complete(dir.path(), &["capture", "k8s-node-1"]);
    for n in ["k8s-node-11", "k8s-node-12"] {
        let line = format!("{n}\tnode of lab {LAB}");
        assert!(nodes.contains(&line), "{nodes:?}");
    }
    let (pods, _) = complete(dir.path(), &["trace", "test-net/busy"]);
    assert!(
        pods.contains(&format!("test-net/{BUSYBOX}\tpod")),
        "{pods:?}"
    );
    let (services, _) = complete(dir.path(), &["trace", "x", "test-svc-ns/linux0224"]);
    assert!(
        services.contains(&"test-svc-ns/linux0224-nginx\tService".to_string()),
        "{services:?}"
    );
    // The machine's own kubectl, when it is new enough to ask (1.26+).
    let version = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output();
    let minor = version
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| {
            v["clientVersion"]["minor"]
                .as_str()?
                .trim_end_matches('+')
                .parse::<u32>()
                .ok()
        });
    if minor.is_some_and(|m| m >= 26) {
        let out = kubectl(
            "kubectl",
            dir.path(),
            &["__complete", "knetdoctor", "lab", "break", "route-"],
        );
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(
            lines,
            ["route-missing", "route-wrong-gw", ":4"],
            "{lines:?}"
        );
    } else {
        eprintln!("no kubectl 1.26 or later here: kubectl's own call left out");
    }
    // kubectl's --cluster and --user pick from the kubeconfig instead of
    // the context's: seen in which API server is reached and which
    // credential helper runs. Run inside the lab's outside namespace,
    // which has no route to these addresses: nothing leaves it.
    let kubeconfig = dir.path().join("two-clusters.yaml");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster: {server: \"http://10.255.0.1:6443\"}\n- name: b\n  cluster: {server: \"http://10.255.0.2:6443\"}\nusers:\n- name: ua\n  user: {token: x}\n- name: ub\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: /nonexistent/helper-of-ub}\ncontexts:\n- name: ctx\n  context: {cluster: a, user: ua}\ncurrent-context: ctx\n",
    )
    .unwrap();
    let check = |extra: &[&str]| -> String {
        let kc = kubeconfig.to_str().unwrap();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("kdlab-{LAB}-outside"),
                BIN,
                "check",
                "--kubeconfig",
                kc,
            ])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(check(&[]).contains("http://10.255.0.1:6443"));
    assert!(check(&["--cluster", "b"]).contains("http://10.255.0.2:6443"));
    assert!(check(&["--user", "ub"]).contains("unable to run auth exec"));
    // A probe waiting 3 s for a reply that never comes: a spinner on a
    // terminal while it waits, cleared before the answer; none in a pipe.
    lab.kd(&["lab", "break", "forward-drop", "--node", "k8s-node-12"]);
    let probe = format!(
        "{BIN} trace {PROBE_BB} {PROBE_MASTER} --port 80 --lab {LAB} --probe --timeout 3; echo probe-exited-$?; sleep 30"
    );
    let t = Tmux::start(&format!("kdspin-{}", std::process::id()), &probe);
    assert!(
        t.wait_for("probing the path", std::time::Duration::from_secs(10))
            .is_some(),
        "{}",
        t.pane()
    );
    assert!(
        t.wait_for("probe-exited-1", std::time::Duration::from_secs(15))
            .is_some()
    );
    assert!(!t.pane().contains("probing the path"), "{}", t.pane());
    let piped = kd(&[
        "trace",
        PROBE_BB,
        PROBE_MASTER,
        "--port",
        "80",
        "--lab",
        LAB,
        "--probe",
        "--timeout",
        "2",
    ]);
    assert_eq!(piped.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("probing"));
    lab.kd(&["lab", "heal"]);
    // bash, through `completion bash`.
    assert_eq!(bash_complete(&["knetdoctor", "dr"]), ["drops"]);
    assert_eq!(
        bash_complete(&["knetdoctor", "lab", "break", "route-m"]),
        ["route-missing"]
    );
    assert_eq!(
        bash_complete(&["knetdoctor", "repair", "--node", "k8s-node-1"]),
        ["k8s-node-11", "k8s-node-12"]
    );
}

#[test]
fn every_command_has_a_man_page_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    kd_ok(&["man", "--out", out]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    pages.sort();
    // Every command of `--help`, and every subcommand of lab and inspect.
    for page in [
        "knetdoctor.1",
        "knetdoctor-check.1",
        "knetdoctor-trace.1",
        "knetdoctor-drops.1",
        "knetdoctor-repair.1",
        "knetdoctor-lab-break.1",
        "knetdoctor-inspect-node.1",
        "knetdoctor-completion.1",
    ] {
        assert!(pages.contains(&page.to_string()), "{page}: {pages:?}");
    }
    let commands = kd_ok(&["--help"]);
    let listed = commands
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts two spaces in; its wrapped help, further.
        .filter_map(|l| l.strip_prefix("  ").filter(|r| !r.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .count();
    let top: usize = pages.iter().filter(|p| p.matches('-').count() == 1).count();
    assert_eq!(top, listed, "{pages:?}");
    for page in &pages {
        let rendered = Command::new("man")
            .args(["-l", &format!("{out}/{page}")])
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = stdout(&rendered);
        assert!(rendered.status.success(), "{page}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
    }
}

/// The krew manifest: deploy/krew/krew-manifest.sh packages the binary and
/// renders .krew.yaml (krew-release-bot's template) into a krew-index
/// manifest whose sha256 is the archive's (by sha256sum); installed as
/// krew installs it (the archive unpacked into its store, `bin` linked as
/// kubectl-knetdoctor), Debian's kubectl runs it as its plugin.
#[test]
fn the_krew_manifest_installs_a_plugin_kubectl_runs() {
    let out = tempfile::tempdir().unwrap();
    let url = "https://github.com/knetdoctor/knetdoctor/releases/download/v0.1.0/knetdoctor-linux-amd64.tar.gz";
    let made = Command::new("sh")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/krew/krew-manifest.sh"),
            BIN,
            "v0.1.0",
            url,
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(out.path().join("knetdoctor.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "knetdoctor");
    assert_eq!(manifest["spec"]["version"], "v0.1.0");
    let platform = &manifest["spec"]["platforms"][0];
    assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
    assert_eq!(platform["uri"], url);
    let archive = out.path().join("knetdoctor-linux-amd64.tar.gz");
    let sum = Command::new("sha256sum").arg(&archive).output().unwrap();
    let sum = stdout(&sum);
    assert_eq!(
        platform["sha256"].as_str().unwrap(),
        sum.split_whitespace().next().unwrap()
    );
    // As krew installs it: the archive into its store, `bin` linked on PATH.
    let store = out.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let unpacked = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&store)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let bin = out.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let target = store.join(platform["bin"].as_str().unwrap());
    std::os::unix::fs::symlink(&target, bin.join("kubectl-knetdoctor")).unwrap();
    let help = kubectl(DEBIAN_KUBECTL, &bin, &["knetdoctor", "--help"]);
    assert!(
        stdout(&help).contains("Usage: kubectl knetdoctor [COMMAND]"),
        "{}",
        stdout(&help)
    );
    // A version without krew's `v` is refused with a usage error.
    let bad = Command::new("sh")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/krew/krew-manifest.sh"),
            BIN,
            "0.1.0",
            url,
        ])
        .arg(out.path().join("bad"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
