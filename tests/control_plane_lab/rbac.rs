//! Under the real API server's RBAC (`--authorization-mode=Node,RBAC`, the
//! default admission plugins), with per-test users whose client
//! certificates the lab's CA signed and TLS verified against that CA:
//! a user with no rights gets a clear "forbidden" at once, wrong
//! credentials a clear 401, a user bound only to what `knetdoctor rbac`
//! prints runs every reading command with the admin's answers, and a user
//! who may read one namespace gets a partial answer that says what it
//! could not read and what it skipped. The bindings are applied with
//! Debian's kubectl, and kubectl is asked what each user may do.

use std::time::{Duration, Instant};

use super::text;
use crate::common::*;

fn kubeconfig(name: &str, user: &str) -> String {
    format!("/run/knetdoctor/lab/{name}/cp/pki/{user}.kubeconfig")
}

/// `kubectl auth can-i VERB RESOURCE` as the admin impersonating `user`.
fn can_i(admin: &str, user: &str, args: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--as", user]);
    let out = kubectl(admin, &a, None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

pub fn under_rbac(lab: &Lab, name: &str, version: &str) {
    let admin = kubeconfig(name, "admin");
    let outsider = kubeconfig(name, "outsider");

    // 1. No rights at all: a clear refusal within two seconds, naming the
    // user, the verb, the resource and the scope, and what to grant.
    let started = Instant::now();
    let out = kd(&["check", "--kubeconfig", &outsider, "--lab", name]);
    let took = started.elapsed();
    eprintln!("{version}: a user without rights is refused after {took:?}");
    let err = text(&out);
    assert_eq!(out.status.code(), Some(3), "{version}: {err}");
    // At once, not after the list timeout (60 s) it used to wait out;
    // the figure is printed for the record, not held to a clock here.
    assert!(took < Duration::from_secs(10), "{version}: took {took:?}");
    for want in [
        "refused every list knetdoctor needs",
        "User \"lab-outsider\" cannot list resource",
        "knetdoctor rbac --user NAME",
    ] {
        assert!(err.contains(want), "{version}: no {want:?} in {err}");
    }
    assert!(!err.contains("cannot reach"), "{version}: {err}");
    // kubectl agrees the user may not.
    assert!(!can_i(&admin, "lab-outsider", &["list", "pods", "-A"]));

    // 2. Credentials the server does not accept: a 401, said as such.
    let bad = std::env::temp_dir().join(format!("kd-bad-{name}-{}", std::process::id()));
    let server = std::fs::read_to_string(&admin)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .unwrap();
    std::fs::write(
        &bad,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority: /run/knetdoctor/lab/{name}/cp/pki/ca.crt\nusers:\n- name: u\n  user:\n    token: not-a-token-of-this-cluster\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: u}}\ncurrent-context: lab\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = kd(&[
        "check",
        "--kubeconfig",
        bad.to_str().unwrap(),
        "--lab",
        name,
    ]);
    let took = started.elapsed();
    let _ = std::fs::remove_file(&bad);
    eprintln!("{version}: wrong credentials are refused after {took:?}");
    let err = text(&out);
    assert_eq!(out.status.code(), Some(3), "{version}: {err}");
    // At once, not after the list timeout (60 s) it used to wait out;
    // the figure is printed for the record, not held to a clock here.
    assert!(took < Duration::from_secs(10), "{version}: took {took:?}");
    assert!(
        err.contains("did not accept your credentials (401 Unauthorized)"),
        "{version}: {err}"
    );

    // 3. The reader role, bound as `knetdoctor rbac --user` prints it.
    let grant = |args: &[&str]| {
        let yaml = kd_ok(args);
        let out = kubectl(&admin, &["apply", "-f", "-"], Some(&yaml));
        assert!(out.status.success(), "{version}: {}", text(&out));
    };
    grant(&["rbac", "--user", "lab-reader"]);
    grant(&["rbac", "--user", "lab-team", "-n", "test-svc-ns"]);
    // What it grants, as the API server's authorizer answers.
    assert!(can_i(
        &admin,
        "lab-reader",
        &["watch", "endpointslices", "-A"]
    ));
    assert!(can_i(
        &admin,
        "lab-reader",
        &["list", "configmaps", "-n", "kube-system"]
    ));
    for denied in [
        &["list", "secrets", "-A"][..],
        &["get", "secrets", "-n", "kube-system"],
        &["list", "configmaps", "-n", "default"],
        &["create", "pods", "-n", "default"],
        &["get", "nodes"],
    ] {
        assert!(
            !can_i(&admin, "lab-reader", denied),
            "{version}: the reader may {denied:?}"
        );
    }
    assert!(can_i(
        &admin,
        "lab-team",
        &["list", "pods", "-n", "test-svc-ns"]
    ));
    assert!(!can_i(&admin, "lab-team", &["list", "pods", "-A"]));

    let reader = kubeconfig(name, "reader");
    let want = check_findings(&["check", "--kubeconfig", &admin, "--lab", name, "-o", "json"]);
    assert_eq!(want, (Some(0), vec![]), "{version}: the admin's answer");
    let reader_check = || {
        check_findings(&[
            "check",
            "--kubeconfig",
            &reader,
            "--lab",
            name,
            "-o",
            "json",
        ])
    };
    // RBAC's caches take a moment to see a new binding.
    let got = poll(Duration::from_secs(20), reader_check, |got| *got == want);
    assert_eq!(got, want, "{version}: the reader's check");

    // Every reading command, as the reader and nothing more.
    let live = ["--kubeconfig", reader.as_str(), "--lab", name];
    let runs: &[&[&str]] = &[
        &["check"],
        &["check", "-o", "wide"],
        &["check", "-n", "test-svc-ns"],
        &["trace", PODS[6], "test-svc-ns/linux0224-nginx"],
        &["trace", PODS[2], PODS[0]],
        &["trace", PODS[6], "linux0224-nginx.test-svc-ns"],
        &["inspect", "svc", "test-svc-ns/linux0224-nginx"],
        &["inspect", "pod", PODS[2]],
        &["inspect", "ingress", "test-ingress", "-n", "test-svc-ns"],
        &["inspect", "dns", "kube-dns.kube-system", "-n", "test-net"],
        &["inspect", "node", "k8s-node-12"],
        &["repair", "--node", "k8s-node-12"],
    ];
    for args in runs {
        let mut a = args.to_vec();
        a.extend_from_slice(&live);
        let out = kd(&a);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{version}: {a:?}\n{}",
            text(&out)
        );
        assert!(
            !text(&out).contains("forbidden"),
            "{version}: {a:?}\n{}",
            text(&out)
        );
    }
    // A fault the reader's check finds as the admin's does.
    lab.kd(&["lab", "break", "svc-chain-missing"]);
    let want = vec![(
        "kube-proxy-svc-chain-missing".to_string(),
        "k8s-node-12".to_string(),
    )];
    let got = poll(Duration::from_secs(30), reader_check, |got| got.1 == want);
    assert_eq!(got, (Some(1), want), "{version}: the reader, a fault");
    lab.kd(&["lab", "heal"]);
    // The dashboard reads as the reader too.
    let t = tmux::Tmux::start(
        &format!("kdrbac-{name}-{}", std::process::id()),
        &format!("{BIN} tui --kubeconfig {reader} --lab {name}; sleep 60"),
    );
    tmux::expect_screen(&t, "0 findings", 30);
    t.keys(&["q"]);
    drop(t);

    // 4. One namespace: a partial answer. The namespace's objects are
    // read; the rest is listed with the checks it skipped; exit 5.
    let team = kubeconfig(name, "team");
    let args = [
        "check",
        "--kubeconfig",
        team.as_str(),
        "--lab",
        name,
        "-n",
        "test-svc-ns",
    ];
    let out = poll(
        Duration::from_secs(20),
        || kd(&args),
        |got| got.status.code() == Some(5),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(5), "{version}: {t}");
    for want in [
        "Nodes: forbidden → flannel lease checks, flannel overlay checks",
        "ConfigMaps in kube-system: forbidden →",
        "kube-proxy rule checks",
        "kube-dns checks",
        "IngressClasses: forbidden → Ingress checks skipped",
        "User \"lab-team\" cannot list resource \"nodes\"",
    ] {
        assert!(t.contains(want), "{version}: no {want:?} in {t}");
    }
    let mut json = args.to_vec();
    json.extend_from_slice(&["-o", "json"]);
    let (code, f) = check_findings(&json);
    assert_eq!(code, Some(5));
    assert!(
        f.iter().all(|(id, _)| id == "api-unreadable"),
        "{version}: {f:?}"
    );
    // Everything the namespace-limited user could not read: Nodes,
    // IngressClasses, two namespaces' ConfigMaps, and the five namespaced
    // kinds outside its namespace.
    assert_eq!(f.len(), 9, "{version}: {f:?}");
    assert!(t.contains("Services outside test-svc-ns: forbidden"), "{t}");
    // The verdicts that stand on the namespace's own objects still run: a
    // Service there that selects no pod (made by the admin) is found.
    let probe = "apiVersion: v1\nkind: Service\nmetadata:\n  name: rbac-probe\n  namespace: test-svc-ns\nspec:\n  selector:\n    app: nothing-here\n  ports:\n  - port: 80\n";
    let out = kubectl(&admin, &["apply", "-f", "-"], Some(probe));
    assert!(out.status.success(), "{}", text(&out));
    let (code, f) = poll(
        Duration::from_secs(20),
        || check_findings(&json),
        |(_, f)| {
            f.iter()
                .any(|(id, _)| id == "service-selector-matches-nothing")
        },
    );
    let out = kubectl(
        &admin,
        &["delete", "service", "rbac-probe", "-n", "test-svc-ns"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(code, Some(1), "{version}: {f:?}");
    assert_eq!(
        f.iter()
            .filter(|(id, _)| id != "api-unreadable")
            .collect::<Vec<_>>(),
        [&(
            "service-selector-matches-nothing".to_string(),
            "cluster".to_string()
        )],
        "{version}"
    );
    // Without -n it may read nothing cluster-wide: refused, with the hint.
    let out = kd(&["check", "--kubeconfig", &team, "--lab", name]);
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(text(&out).contains("-n NAMESPACE"), "{}", text(&out));
}
