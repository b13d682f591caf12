//! Shared helpers for the lab tests: a lab that is always taken down (also
//! when the test panics), and the independent tools the tests verify with.
#![allow(dead_code)]

pub mod probe_cases;
pub mod tmux;
pub mod tshark;

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_knetdoctor");

/// Runs knetdoctor with `args`.
pub fn kd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run knetdoctor")
}

/// Runs knetdoctor and asserts success, returning stdout.
pub fn kd_ok(args: &[&str]) -> String {
    let out = kd(args);
    assert!(
        out.status.success(),
        "knetdoctor {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `knetdoctor ARGS -o json`'s exit code and findings, as (id, node or
/// `cluster`) pairs in its order.
pub fn check_findings(args: &[&str]) -> (Option<i32>, Vec<(String, String)>) {
    let out = kd(args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["node"].as_str().unwrap_or("cluster").to_string(),
            )
        })
        .collect();
    (out.status.code(), f)
}

/// Calls `f` until `done` holds for its answer or `limit` has passed;
/// the last answer (the controllers and caches of a real API server act
/// asynchronously).
pub fn poll<T>(
    limit: std::time::Duration,
    mut f: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let got = f();
        if done(&got) || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Debian's kubectl (1.20), unpacked by scripts/setup.sh.
pub const KUBECTL: &str = "/var/cache/knetdoctor/kubernetes-client/usr/bin/kubectl";

/// Runs Debian's kubectl with `kubeconfig`, `stdin` piped in.
pub fn kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// Runs a command inside a named namespace with `ip netns exec` (an
/// independent path into the namespace, not knetdoctor's own setns).
pub fn in_ns(ns: &str, argv: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("run ip netns exec")
}

/// stdout of a command in a namespace, with its success.
pub fn in_ns_text(ns: &str, argv: &[&str]) -> (bool, String) {
    let o = in_ns(ns, argv);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Namespaces whose name starts with `prefix` (from `ip netns list`).
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces); run them as the README says"
    );
}

/// kube-proxy's nftables table as `nft -j list table ip kube-proxy` shows
/// it (nothing when there is none): one line per object in the kernel's
/// order, without handles, each set's elements sorted.
pub fn nft_snapshot(node_ns: &str) -> Vec<String> {
    nft_table_snapshot(node_ns, "kube-proxy")
}

/// [`nft_snapshot`] of table `ip NAME`.
pub fn nft_table_snapshot(node_ns: &str, name: &str) -> Vec<String> {
    let (ok, text) = in_ns_text(node_ns, &["nft", "-j", "list", "table", "ip", name]);
    if !ok {
        return Vec::new();
    }
    let doc: serde_json::Value = serde_json::from_str(&text).expect("nft -j prints JSON");
    let mut lines = Vec::new();
    for mut item in doc["nftables"].as_array().cloned().unwrap_or_default() {
        if let Some(obj) = item.as_object_mut().and_then(|o| o.values_mut().next()) {
            if let Some(o) = obj.as_object_mut() {
                o.remove("handle");
            }
            if let Some(elem) = obj.get_mut("elem").and_then(|e| e.as_array_mut()) {
                elem.sort_by_key(|e| e.to_string());
            }
        }
        lines.push(item.to_string());
    }
    lines
}

/// A lab for one test; `lab down` runs on drop, panic or not.
pub struct Lab {
    pub name: String,
}

impl Lab {
    pub fn up(name: &str, extra: &[&str]) -> Lab {
        require_root();
        // A previous crashed run may have left this lab behind.
        let _ = kd(&["lab", "down", "--name", name]);
        let lab = Lab {
            name: name.to_string(),
        };
        let mut args = vec!["lab", "up", "--name", name];
        args.extend_from_slice(extra);
        kd_ok(&args);
        lab
    }

    pub fn ns(&self, suffix: &str) -> String {
        format!("kdlab-{}-{suffix}", self.name)
    }

    /// The pid of the lab's process `role` (kube-proxy, knetdoctor-agent)
    /// that runs for `node`, as the lab's state records it.
    pub fn process_pid(&self, role: &str, node: &str) -> i32 {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("/run/knetdoctor/lab/{}/state.json", self.name))
                .unwrap(),
        )
        .unwrap();
        state["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["role"] == role && p["pod"] == node)
            .and_then(|p| p["pid"].as_i64())
            .unwrap_or_else(|| panic!("no {role} for {node} in {state}")) as i32
    }

    pub fn node(&self, node: &str) -> String {
        self.ns(node)
    }

    pub fn pod(&self, pod: &str) -> String {
        self.ns(&format!("pod-{pod}"))
    }

    pub fn outside(&self) -> String {
        self.ns("outside")
    }

    pub fn kd(&self, args: &[&str]) -> String {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--name", &self.name]);
        kd_ok(&a)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = kd(&["lab", "down", "--name", &self.name]);
        let left = namespaces_with(&format!("kdlab-{}-", self.name));
        if !std::thread::panicking() {
            assert!(left.is_empty(), "lab down left namespaces behind: {left:?}");
        }
    }
}

/// Seed pod names.
pub const NGINX_MASTER: &str = "nginx-56d58c56c7-zl6ms";
pub const NGINX_NODE11: &str = "nginx-56d58c56c7-2zp46";
pub const NGINX_NODE12: &str = "nginx-56d58c56c7-mr7p9";
pub const BUSYBOX: &str = "busybox-deployment-5db9ff768-zrlxw";
/// Every pod of the seed lab, as `namespace/name`.
pub const PODS: [&str; 7] = [
    "test-svc-ns/nginx-56d58c56c7-zl6ms",
    "test-svc-ns/nginx-56d58c56c7-2zp46",
    "test-svc-ns/nginx-56d58c56c7-mr7p9",
    "kube-system/coredns-6d56c8448f-g6m9z",
    "kube-system/coredns-6d56c8448f-ws7rb",
    "nginx-ingress/nginx-ingress-75c88594dc-klfqc",
    "test-net/busybox-deployment-5db9ff768-zrlxw",
];
pub const COREDNS_MASTER: &str = "coredns-6d56c8448f-g6m9z";

pub fn ping(ns: &str, ip: &str) -> bool {
    in_ns(ns, &["ping", "-c1", "-W1", ip]).status.success()
}

/// A full-size (1450-byte) don't-fragment ping: proves the MTU as well.
pub fn ping_full(ns: &str, ip: &str) -> bool {
    in_ns(ns, &["ping", "-c1", "-W1", "-M", "do", "-s", "1422", ip])
        .status
        .success()
}

/// HTTP GET with curl; the body on success.
pub fn curl(ns: &str, url: &str, host: Option<&str>) -> Option<String> {
    let header = host.map(|h| format!("Host: {h}"));
    let mut argv = vec!["curl", "-sf", "-m", "2"];
    if let Some(h) = &header {
        argv.extend_from_slice(&["-H", h]);
    }
    argv.push(url);
    let (ok, body) = in_ns_text(ns, &argv);
    ok.then(|| body.trim().to_string())
}

/// `dig +short` against kube-dns; the answers.
pub fn dig(ns: &str, name: &str) -> Vec<String> {
    let (_, out) = in_ns_text(
        ns,
        &["dig", "+short", "+time=1", "+tries=1", "@10.1.0.10", name],
    );
    out.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}
