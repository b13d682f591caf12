//! The probe's fault cases: each fault with a source and destination it
//! breaks and where the request is last seen, shared by the local probe
//! test and the probe through the agents.

pub const PROBE_BB: &str = "test-net/busybox-deployment-5db9ff768-zrlxw";
pub const PROBE_MASTER: &str = "test-svc-ns/nginx-56d58c56c7-zl6ms";
pub const PROBE_N12: &str = "test-svc-ns/nginx-56d58c56c7-mr7p9";

/// (fault, src, dst, extra args, where the request is last seen; empty:
/// anywhere, the path is not cut).
pub type ProbeCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

pub const PROBE_FAULT_CASES: &[ProbeCase] = &[
    (
        "route-missing",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "route-missing",
        PROBE_MASTER,
        PROBE_N12,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "route-wrong-gw",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "neigh-missing",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "neigh-wrong-mac",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/flannel.1",
    ),
    (
        "fdb-missing",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/flannel.1",
    ),
    (
        "fdb-stale-dst",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/flannel.1",
    ),
    (
        "vtep-down",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "vtep-down",
        PROBE_MASTER,
        PROBE_N12,
        &["--port", "80"],
        "k8s-node-12/eth0",
    ),
    (
        "vtep-mtu",
        PROBE_BB,
        PROBE_MASTER,
        &["--proto", "icmp"],
        "k8s-node-12/veth",
    ),
    (
        "cni0-addr-wrong",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "",
    ),
    (
        "ip-forward-off",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "forward-drop",
        PROBE_BB,
        PROBE_MASTER,
        &["--port", "80"],
        "k8s-node-12/veth",
    ),
    (
        "pod-veth-down",
        PROBE_MASTER,
        PROBE_N12,
        &["--port", "80"],
        "k8s-node-12/flannel.1",
    ),
    (
        "svc-chain-missing",
        PROBE_BB,
        "test-svc-ns/linux0224-nginx",
        &[],
        "k8s-node-12/veth",
    ),
    (
        "sep-stale",
        PROBE_BB,
        "test-svc-ns/linux0224-nginx",
        &[],
        "",
    ),
    (
        "nodeport-missing",
        "192.168.56.254",
        "k8s-node-12:30005",
        &[],
        "k8s-node-12/eth0",
    ),
    ("dns-down", PROBE_BB, "linux0224-nginx.test-svc-ns", &[], ""),
    // kube-proxy's NodePort rule gone on node-12: a pod there and one on
    // the master are refused by node-12's own stack, as the trace says.
    (
        "nodeport-missing",
        PROBE_BB,
        "k8s-node-12:30005",
        &[],
        "k8s-node-12/veth",
    ),
    (
        "nodeport-missing",
        PROBE_MASTER,
        "k8s-node-12:30005",
        &[],
        "k8s-node-12/eth0",
    ),
];
