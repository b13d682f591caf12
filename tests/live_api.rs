//! The live source against a real API server: Kubernetes 1.20's
//! kube-apiserver and kube-controller-manager built from Debian's source
//! (scripts/build-apiserver.sh, cached), with etcd, on 127.0.0.1 only. The
//! lab publishes its objects there (`lab up --kubeconfig`) and `check` must
//! answer the same live as offline. 1.20 serves no discovery/v1
//! EndpointSlices, so this also exercises the Endpoints fallback.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "knetdoctor-test-token";

/// etcd + kube-apiserver + kube-controller-manager, killed on drop.
struct ApiServer {
    children: Vec<Child>,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(dir: &Path, name: &str, program: &str, args: &[String]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

fn start_api_server() -> ApiServer {
    let out = Command::new("scripts/build-apiserver.sh")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/build-apiserver.sh");
    assert!(out.status.success(), "building the API server failed");
    let bin = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap()
            .to_string(),
    );
    let dir = std::env::temp_dir().join(format!("knetdoctor-apiserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("sa.key");
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-out", key.to_str().unwrap(), "2048"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{TOKEN},admin,admin,\"system:masters\"\n"),
    )
    .unwrap();
    // The server's certificate from a CA the client trusts, as the lab's own
    // control plane makes it; no skipping of TLS verification.
    let pki = knetdoctor::lab::control_plane::pki::Pki::create(
        &dir.join("pki"),
        std::net::Ipv4Addr::new(192, 168, 56, 10),
        std::net::Ipv4Addr::new(10, 1, 0, 1),
        &[],
    )
    .expect("make the test PKI");
    let ca = pki.path("ca.crt");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: admin}}\ncurrent-context: lab\n",
            ca.display()
        ),
    )
    .unwrap();
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let mut server = ApiServer {
        children: Vec::new(),
        dir: dir.clone(),
        kubeconfig,
    };
    server.children.push(spawn(
        &dir,
        "etcd",
        "etcd",
        &[
            format!("--data-dir={}", d("etcd")),
            "--listen-client-urls=http://127.0.0.1:23790".into(),
            "--advertise-client-urls=http://127.0.0.1:23790".into(),
            "--listen-peer-urls=http://127.0.0.1:23800".into(),
        ],
    ));
    server.children.push(spawn(
        &dir,
        "apiserver",
        bin.join("kube-apiserver").to_str().unwrap(),
        &[
            "--etcd-servers=http://127.0.0.1:23790".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=6443".into(),
            "--insecure-port=0".into(),
            // The lab's `kubernetes` endpoint: its master's address, as kube-proxy rules in the lab have it.
            "--advertise-address=192.168.56.10".into(),
            "--service-cluster-ip-range=10.1.0.0/16".into(),
            format!("--token-auth-file={}", d("tokens.csv")),
            // As every real cluster runs: RBAC, and the default admission
            // plugins (the test's user is in system:masters).
            "--authorization-mode=Node,RBAC".into(),
            format!("--tls-cert-file={}", pki.path("apiserver.crt").display()),
            format!(
                "--tls-private-key-file={}",
                pki.path("apiserver.key").display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", d("sa.key")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = Command::new("curl")
            .args([
                "-sf",
                "--cacert",
                ca.to_str().unwrap(),
                "-m",
                "2",
                "-H",
                &format!("Authorization: Bearer {TOKEN}"),
                "https://127.0.0.1:6443/readyz",
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API server did not become ready; see {}",
            dir.join("apiserver.log").display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Only the endpoint controllers: no kubelet exists, and the node-lifecycle
    // controller would evict the lab's pods.
    server.children.push(spawn(
        &dir,
        "controller-manager",
        bin.join("kube-controller-manager").to_str().unwrap(),
        &[
            format!("--kubeconfig={}", server.kubeconfig.display()),
            "--controllers=endpoint,endpointslice".into(),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
        ],
    ));
    server
}

fn findings(args: &[&str]) -> BTreeSet<(String, String)> {
    check_findings(args).1.into_iter().collect()
}

/// Polls until the live answer equals `want` (controllers act asynchronously).
fn live_settles(kubeconfig: &str, want: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = findings(&[
            "check",
            "--kubeconfig",
            kubeconfig,
            "--lab",
            "live",
            "-o",
            "json",
        ]);
        if &got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn live_answers_match_offline_on_a_real_api_server() {
    require_root();
    let api = start_api_server();
    let kc = api.kubeconfig.to_str().unwrap().to_string();
    let lab = Lab::up("live", &["--kubeconfig", &kc]);

    let offline = findings(&["check", "--lab", "live", "-o", "json"]);
    assert!(offline.is_empty(), "{offline:?}");
    assert_eq!(live_settles(&kc, &offline), offline);

    for (fault, want) in [
        ("route-missing", ("route-missing", "k8s-node-12")),
        ("dns-down", ("kube-dns-no-endpoints", "cluster")),
        (
            "ingress-backend-port",
            ("ingress-backend-port-missing", "cluster"),
        ),
        (
            "svc-chain-missing",
            ("kube-proxy-svc-chain-missing", "k8s-node-12"),
        ),
    ] {
        lab.kd(&["lab", "break", fault]);
        let want: BTreeSet<(String, String)> = [(want.0.to_string(), want.1.to_string())].into();
        assert_eq!(
            findings(&["check", "--lab", "live", "-o", "json"]),
            want,
            "{fault} offline"
        );
        assert_eq!(live_settles(&kc, &want), want, "{fault} live");
        lab.kd(&["lab", "heal"]);
    }
    assert!(live_settles(&kc, &BTreeSet::new()).is_empty());

    // The watches' reading is brought up to date object by object: after
    // each change a watch announces (an object created, relabelled,
    // deleted; a Node relabelled), the reading equals a whole read.
    {
        use knetdoctor::inspect::live::{LiveSource, Reflected, load};
        let src = LiveSource {
            kubeconfig: Some(api.kubeconfig.clone()),
            ..Default::default()
        };
        let (tx, changed) = std::sync::mpsc::channel();
        let watched = Reflected::start(&src, tx.into()).expect("watches start");
        let _ = watched.cluster();
        for change in [
            &[
                "create",
                "service",
                "clusterip",
                "kd-watch",
                "--tcp=80:80",
                "-n",
                "default",
            ][..],
            &[
                "label",
                "service",
                "kd-watch",
                "-n",
                "default",
                "kd=relabelled",
            ],
            &["label", "node", "k8s-node-12", "kd=relabelled"],
            &["delete", "service", "kd-watch", "-n", "default"],
        ] {
            let out = kubectl(&kc, change, None);
            assert!(out.status.success(), "kubectl {change:?}: {out:?}");
            changed
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no watch event after {change:?}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                while changed.try_recv().is_ok() {}
                let (got, whole) = (watched.cluster(), load(&src).expect("a whole read"));
                let same = got.services == whole.services
                    && got.nodes == whole.nodes
                    && got.endpoint_slices == whole.endpoint_slices;
                if same {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "after {change:?} the watches' reading differs from a whole read"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    // The dashboard on the live source: an API change arrives through the
    // watches, the periodic re-read being a minute away. The Ingress fault
    // changes only API objects (no kernel notification can wake it).
    let t = common::tmux::Tmux::start(
        &format!("kdlive-{}", std::process::id()),
        &format!("{BIN} tui --kubeconfig {kc} --lab live --refresh-ms 60000; sleep 60"),
    );
    common::tmux::expect_screen(&t, "0 findings", 20);
    let started = Instant::now();
    lab.kd(&["lab", "break", "ingress-backend-port"]);
    let took = t.shows_within("ingress-backend-port-missing", Duration::from_secs(2));
    eprintln!(
        "live Ingress change on screen {took:?} after `lab break` returned, {:?} after it began",
        started.elapsed()
    );
    lab.kd(&["lab", "heal"]);
    common::tmux::expect_screen(&t, "0 findings", 10);
    t.keys(&["q"]);
    drop(t);

    // inspect reads live too.
    let out = kd(&[
        "inspect",
        "svc",
        "test-svc-ns/linux0224-nginx",
        "--kubeconfig",
        &kc,
        "--lab",
        "live",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // lab down removes the published objects along with the namespaces.
    drop(lab);
    let out = Command::new("curl")
        .args([
            "-sk",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "https://127.0.0.1:6443/api/v1/nodes",
        ])
        .output()
        .unwrap();
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        nodes["items"].as_array().map(Vec::len),
        Some(0),
        "nodes left in the API server"
    );
}

/// `check` of a lab that is not there against the API server at `server`
/// (any token): what it says of the server is all there is to say.
fn check_with_server(server: &str) -> std::process::Output {
    // One directory per call: the tests run side by side in one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("knetdoctor-server-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {{cluster: x, user: u}}\ncurrent-context: x\n"),
    )
    .unwrap();
    let out = kd(&[
        "check",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--lab",
        "nolab",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn an_unreachable_cluster_fails_fast_with_exit_3() {
    let start = Instant::now();
    let out = check_with_server("https://127.0.0.1:1");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API at https://127.0.0.1:1"),
        "{err}"
    );
    assert!(
        !err.contains("ERROR"),
        "library logs leak to the user: {err}"
    );
    let out = kd(&["check", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(out.status.code(), Some(3));
}

/// An API server that answers `/version` and fails every list with a 500
/// (etcd timing out, in the server's words), counting the lists.
fn failing_api_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = lists.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut request = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            while reader.read_line(&mut request).is_ok_and(|n| n > 2)
                && !request.ends_with("\r\n\r\n")
            {}
            let (status, body) = if request.starts_with("GET /version") {
                ("200 OK", r#"{"major":"1","minor":"32","gitVersion":"v1.32.0","gitCommit":"x","gitTreeState":"clean","buildDate":"2024-12-11T00:00:00Z","goVersion":"go1.23","compiler":"gc","platform":"linux/amd64"}"#.to_string())
            } else {
                counted.fetch_add(1, Ordering::Relaxed);
                ("500 Internal Server Error", r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcdserver: request timed out","reason":"InternalError","code":500}"#.to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, lists)
}

#[test]
fn a_list_the_server_keeps_failing_is_said_as_such_with_its_answer() {
    let (url, lists) = failing_api_server();
    let start = Instant::now();
    let out = check_with_server(&url);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    // Before: the watcher tried again for the whole 60 s list timeout,
    // then said the server could not be reached.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        err.contains(&format!(
            "the Kubernetes API at {url}/ answers but could not list"
        )),
        "{err}"
    );
    assert!(
        err.contains("(3 attempts): 500 InternalError: etcdserver: request timed out"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
    assert!(lists.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}
