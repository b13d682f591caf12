//! Checks on synthetic variations of a real node state (captured from the
//! seed lab's k8s-node-12) and of the seed cluster's objects.

use std::collections::BTreeSet;

use super::fixtures::{ipvs_seed, seed};
use super::{FindingId, run};
use crate::dataplane::NodeState;
use crate::dataplane::state::{ConntrackEntry, FdbEntry, IptablesBackendState};
use crate::model::Cluster;

const NODE: &str = "k8s-node-12";

fn ids(cluster: &Cluster, state: &NodeState) -> BTreeSet<String> {
    run(cluster, &[(NODE.to_string(), state.clone())])
        .into_iter()
        .map(|f| f.id.as_str().to_string())
        .collect()
}

fn just(id: &str) -> BTreeSet<String> {
    [id.to_string()].into()
}

#[test]
fn the_captured_healthy_node_has_no_findings() {
    let (c, s) = seed();
    assert_eq!(ids(&c, &s), BTreeSet::new());
}

#[test]
fn node_state_variations() {
    type Mutate = fn(&mut NodeState);
    let cases: &[(&str, Mutate)] = &[
        ("fdb-stale", |s| {
            s.fdb.push(FdbEntry {
                ifindex: 3,
                dev: "flannel.1".into(),
                mac: "02:00:00:00:00:99".parse().unwrap(),
                dst: Some("192.168.56.99".parse().unwrap()),
                vni: None,
                port: None,
                vlan: None,
                master: None,
                flags: vec!["self".into()],
                state: "permanent".into(),
            })
        }),
        ("mtu-mismatch", |s| {
            // A CNI MTU of 1500: both ends of every pod's veth.
            s.attachments.iter_mut().for_each(|a| a.mtu = 1500);
            s.links
                .iter_mut()
                .filter(|l| l.master.as_deref() == Some("cni0"))
                .for_each(|l| l.mtu = 1500)
        }),
        ("policy-rule-missing", |s| {
            s.rules
                .retain(|r| !(r.family == "inet" && r.priority == 32766))
        }),
        ("mtu-mismatch", |s| {
            s.links
                .iter_mut()
                .filter(|l| l.name == "cni0")
                .for_each(|l| l.mtu = 1500)
        }),
        ("bridge-nf-call-iptables-off", |s| {
            s.sysctls.bridge_nf_call_iptables = Some(false)
        }),
        ("vtep-config-wrong", |s| {
            s.links
                .iter_mut()
                .filter(|l| l.name == "flannel.1")
                .for_each(|l| l.vxlan.as_mut().unwrap().learning = true)
        }),
        ("vtep-mac-drift", |s| {
            s.links
                .iter_mut()
                .filter(|l| l.name == "flannel.1")
                .for_each(|l| l.mac = Some("02:11:22:33:44:55".into()))
        }),
        ("vtep-addr-wrong", |s| {
            s.addrs.retain(|a| a.dev != "flannel.1")
        }),
        ("vxlan-tx-checksum-offload", |s| {
            s.vxlan_tx_checksum.insert("flannel.1".into(), true);
        }),
        ("vtep-missing", |s| {
            s.links.retain(|l| l.name != "flannel.1")
        }),
        ("neigh-not-permanent", |s| {
            s.neighs
                .iter_mut()
                .filter(|n| n.dev == "flannel.1")
                .take(1)
                .for_each(|n| n.state = vec!["REACHABLE".into()])
        }),
        ("dns-conntrack-stale", |s| {
            s.conntrack_dns.push(ConntrackEntry {
                proto: "udp".into(),
                orig_src: "10.2.2.50".parse().unwrap(),
                orig_dst: "10.1.0.10".parse().unwrap(),
                orig_dport: 53,
                reply_src: "10.2.0.77".parse().unwrap(),
            })
        }),
        ("iptables-backend-split", |s| {
            let mut legacy = s.iptables[0].ruleset.clone();
            legacy.tables.iter_mut().for_each(|t| {
                t.retain_chains(|c| c.name.starts_with("FLANNEL-") || c.policy.is_some())
            });
            s.iptables.push(IptablesBackendState {
                backend: "legacy".into(),
                ruleset: legacy,
                raw: None,
            });
        }),
        ("route-shadows-pod-cidr", |s| {
            // Half of the master's pod CIDR sent out of eth0.
            let mut r = s
                .routes
                .iter()
                .find(|r| r.dst.to_string() == "192.168.56.0/24")
                .cloned()
                .unwrap();
            r.dst = "10.2.0.0/25".parse().unwrap();
            r.protocol = "boot".into();
            r.prefsrc = None;
            s.routes.push(r);
        }),
        ("pod-veth-mtu-mismatch", |s| {
            s.links
                .iter_mut()
                .filter(|l| l.master.as_deref() == Some("cni0"))
                .take(1)
                .for_each(|l| l.mtu = 1400)
        }),
        ("kube-proxy-not-programmed", |s| {
            s.iptables[0]
                .ruleset
                .tables
                .iter_mut()
                .for_each(|t| t.retain_chains(|c| !c.name.starts_with("KUBE-")));
        }),
    ];
    let mut failures = Vec::new();
    for (want, mutate) in cases {
        let (c, mut s) = seed();
        mutate(&mut s);
        let got = ids(&c, &s);
        if got != just(want) {
            failures.push(format!("{want}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cluster_object_variations() {
    type Mutate = fn(&mut Cluster);
    let cases: &[(&[&str], Mutate)] = &[
        (&["pod-cidr-overlap"], |c| {
            c.nodes[1].spec.as_mut().unwrap().pod_cidr = Some("10.2.0.0/23".into())
        }),
        (&["node-no-flannel-lease"], |c| {
            c.nodes[0]
                .metadata
                .annotations
                .as_mut()
                .unwrap()
                .remove("flannel.alpha.coreos.com/public-ip");
        }),
        (&["node-no-pod-cidr"], |c| {
            c.nodes[0].spec.as_mut().unwrap().pod_cidr = None
        }),
        (&["service-selector-matches-nothing"], |c| {
            let s = c
                .services
                .iter_mut()
                .find(|s| s.metadata.name.as_deref() == Some("linux0224-nginx"))
                .unwrap();
            s.spec.as_mut().unwrap().selector =
                Some([("app".to_string(), "ngnix".to_string())].into());
        }),
        (&["service-named-port-unresolved"], |c| {
            let s = c
                .services
                .iter_mut()
                .find(|s| s.metadata.name.as_deref() == Some("linux0224-nginx"))
                .unwrap();
            s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port = Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("web".into()),
            );
        }),
        (&["service-target-port-unexposed"], |c| {
            let s = c
                .services
                .iter_mut()
                .find(|s| s.metadata.name.as_deref() == Some("linux0224-nginx"))
                .unwrap();
            s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port =
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080));
        }),
        (&["service-no-endpoints"], |c| {
            c.endpoint_slices
                .iter_mut()
                .filter(|s| s.metadata.name.as_deref() == Some("nodeport-service-lab01"))
                .for_each(|s| s.endpoints.clear())
        }),
        (&["cluster-dns-mismatch"], |c| {
            let cm = c
                .config_maps
                .iter_mut()
                .find(|m| m.metadata.name.as_deref() == Some("kubelet-config"))
                .unwrap();
            cm.data.as_mut().unwrap().insert(
                "kubelet".into(),
                "clusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\n".into(),
            );
        }),
        (&["ingress-class-no-controller"], |c| {
            c.ingresses[0].spec.as_mut().unwrap().ingress_class_name = Some("traefik".into())
        }),
        (&["ingress-backend-service-missing"], |c| {
            let b = &mut c.ingresses[0]
                .spec
                .as_mut()
                .unwrap()
                .rules
                .as_mut()
                .unwrap()[0]
                .http
                .as_mut()
                .unwrap()
                .paths[0]
                .backend;
            b.service.as_mut().unwrap().name = "linux0224-nginx-v2".into();
        }),
        (&["network-policy-not-enforced"], |c| {
            c.network_policies
                .push(k8s_openapi::api::networking::v1::NetworkPolicy {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        namespace: Some("test-svc-ns".into()),
                        name: Some("deny-all".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                })
        }),
        (&["coredns-forward-loop"], |c| {
            let cm = c
                .config_maps
                .iter_mut()
                .find(|m| m.metadata.name.as_deref() == Some("coredns"))
                .unwrap();
            let text = cm.data.as_ref().unwrap()["Corefile"]
                .replace("forward . /etc/resolv.conf", "forward . 127.0.0.53");
            cm.data.as_mut().unwrap().insert("Corefile".into(), text);
        }),
    ];
    let mut failures = Vec::new();
    for (want, mutate) in cases {
        let (mut c, _) = seed();
        mutate(&mut c);
        let got: BTreeSet<String> = run(&c, &[])
            .into_iter()
            .map(|f| f.id.as_str().to_string())
            .collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        if got != want {
            failures.push(format!("{want:?}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The captured node as kube-proxy's IPVS mode would leave it: kube-ipvs0
/// holding every ClusterIP, the virtual servers of the ipvsadm fixture, and
/// the kube-proxy ConfigMap saying `mode: ipvs`.
#[test]
fn ipvs_mode_node() {
    let (c, s) = ipvs_seed();
    assert_eq!(
        crate::model::kube_proxy::proxy_mode(&c),
        crate::model::kube_proxy::ProxyMode::Ipvs
    );
    assert_eq!(
        ids(&c, &s),
        BTreeSet::new(),
        "the fixture is what IPVS mode programs"
    );
    type Mutate = fn(&mut NodeState);
    let cases: &[(&str, Mutate)] = &[
        ("ipvs-virtual-server-missing", |s| {
            s.ipvs.retain(|v| v.addr != "10.1.59.153:80")
        }),
        ("ipvs-virtual-server-missing", |s| {
            s.ipvs.retain(|v| v.addr != "192.168.56.12:30005")
        }),
        ("ipvs-real-servers-mismatch", |s| {
            s.ipvs
                .iter_mut()
                .filter(|v| v.proto == "udp")
                .for_each(|v| v.reals[0].addr = "10.2.0.99:53".into())
        }),
        ("ipvs-cluster-ip-unbound", |s| {
            s.addrs.retain(|a| a.address.to_string() != "10.1.0.10")
        }),
        ("ipvs-device-missing", |s| {
            s.links.retain(|l| l.name != "kube-ipvs0")
        }),
    ];
    for (want, mutate) in cases {
        let (c, mut s) = ipvs_seed();
        mutate(&mut s);
        assert_eq!(ids(&c, &s), just(want), "{want}");
    }
}

/// The seed node's rules as kube-proxy 1.20 lays them out
/// (pkg/proxy/iptables/proxier.go of Debian's 1.20 source): for each
/// ClusterIP a `! -s <clusterCIDR> … -j KUBE-MARK-MASQ` rule just before
/// the `-j KUBE-SVC-…` rule with the same match; NodePorts as a
/// KUBE-MARK-MASQ rule and a KUBE-SVC jump, no KUBE-EXT chains.
pub(crate) fn v1_20_layout(modern: &str) -> String {
    let mut out = String::new();
    for l in modern.lines() {
        if l.contains("KUBE-EXT-") && !l.starts_with("-A KUBE-NODEPORTS") {
            continue;
        }
        if let Some(rest) = l.strip_prefix("-A KUBE-SERVICES -d ")
            && l.contains("-j KUBE-SVC-")
        {
            let (matched, _) = rest.rsplit_once(" -j ").unwrap();
            out.push_str(&format!(
                "-A KUBE-SERVICES ! -s 10.2.0.0/16 -d {matched} -j KUBE-MARK-MASQ\n"
            ));
        }
        if l.starts_with("-A KUBE-NODEPORTS") && l.contains("-j KUBE-EXT-") {
            let (matched, ext) = l.rsplit_once(" -j ").unwrap();
            out.push_str(&format!("{matched} -j KUBE-MARK-MASQ\n"));
            out.push_str(&format!(
                "{matched} -j {}\n",
                ext.replace("KUBE-EXT-", "KUBE-SVC-")
            ));
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[test]
fn kube_proxy_1_20s_layout_is_healthy_and_traced_to_the_right_service() {
    let (c, mut s) = seed();
    let modern = s.iptables[0].ruleset.render();
    let old = v1_20_layout(&modern);
    assert!(
        old.contains("-j KUBE-MARK-MASQ\n-A KUBE-SERVICES -d 10.1.0.1/32"),
        "{old}"
    );
    s.iptables[0].ruleset = crate::dataplane::iptables::save::parse(&old).unwrap();
    assert_eq!(ids(&c, &s), BTreeSet::new());

    let nodes = vec![(NODE.to_string(), s)];
    let findings = run(&c, &nodes);
    let findings = super::share(findings);
    let world = crate::trace::sim::World::new(&c, &nodes, &findings);
    let src = crate::trace::resolve::resolve(&c, "192.168.56.254", "default").unwrap();
    let dst = crate::trace::resolve::resolve(&c, "k8s-node-12:30005", "default").unwrap();
    let t = crate::trace::sim::trace(&world, &src, &dst, crate::trace::Proto::Tcp, None);
    let labels: Vec<&str> = t.branches.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(
        labels
            .iter()
            .all(|l| l.contains("DNAT 10.2.") && l.ends_with(":80 (p=0.333)")),
        "{labels:?}"
    );
    let svc = crate::trace::resolve::resolve(&c, "test-svc-ns/linux0224-nginx", "default").unwrap();
    let pod = crate::trace::resolve::resolve(
        &c,
        "test-net/busybox-deployment-5db9ff768-zrlxw",
        "default",
    )
    .unwrap();
    let t = crate::trace::sim::trace(&world, &pod, &svc, crate::trace::Proto::Tcp, None);
    assert_eq!(t.branches.len(), 3, "{:?}", t.hops);
}

/// A node the real kube-proxy 1.32 programs in nftables mode (its table
/// from tests/fixtures/nftables/real, no KUBE-* iptables chains): the mode
/// is read from the node whatever the ConfigMap says; the table is what
/// kube-proxy would program for the seed cluster (healthy), a missing
/// element or other endpoints are findings, and trace follows the table's
/// own DNATs; no table at all is kube-proxy not running, in either mode.
#[test]
fn nftables_mode_node_is_checked_and_traced_by_its_table() {
    use crate::dataplane::nftables::{KubeProxyTable, NftTable};
    use crate::model::kube_proxy::{ProxyMode, node_proxy_mode};
    let (c, mut s) = seed();
    s.iptables[0]
        .ruleset
        .tables
        .iter_mut()
        .for_each(|t| t.retain_chains(|c| !c.name.starts_with("KUBE-")));
    let without_table = s.clone();
    s.nft_tables = vec![
        NftTable {
            family: "ip".into(),
            name: "kube-proxy".into(),
        },
        NftTable {
            family: "ip6".into(),
            name: "kube-proxy".into(),
        },
    ]
    .into();
    let table = KubeProxyTable::parse_json(include_str!(
        "../../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.ip-kube-proxy.json"
    ))
    .unwrap();
    s.kube_proxy_nft = Some(table.clone());
    assert_eq!(node_proxy_mode(&c, &s), ProxyMode::Nftables);
    assert_eq!(
        ids(&c, &s),
        BTreeSet::new(),
        "the real table is what kube-proxy programs"
    );
    assert_eq!(ids(&c, &without_table), just("kube-proxy-not-programmed"));
    // Each breakage is made in the table as the kernel would hold it, and
    // the indices rebuilt from it.
    let broken = |edit: &dyn Fn(&mut crate::dataplane::nft_table::NftTableSpec)| {
        let mut b = s.clone();
        let mut t = table.table.clone();
        edit(&mut t);
        b.kube_proxy_nft = Some(KubeProxyTable::from(t));
        ids(&c, &b)
    };
    let nginx_vip = |e: &serde_json::Value| e[0]["concat"][0] == "10.1.59.153";
    assert_eq!(
        broken(&|t| t
            .sets
            .get_mut("service-ips")
            .unwrap()
            .elem
            .retain(|e| !nginx_vip(e))),
        just("kube-proxy-nftables-service-missing")
    );
    assert_eq!(
        broken(&|t| {
            for (name, chain) in t.chains.iter_mut() {
                if name.contains("linux0224-nginx/tcp/__10.2.0.42/80") {
                    chain.rules[1].expr[1]["dnat"]["addr"] = "10.2.0.99".into();
                }
            }
        }),
        just("kube-proxy-nftables-endpoints-mismatch")
    );
    assert_eq!(
        broken(&|t| t.chains.get_mut("masquerading").unwrap().rules.clear()),
        just("kube-proxy-nftables-chain-wrong")
    );
    assert_eq!(
        broken(&|t| {
            t.chains.remove("nat-postrouting");
        }),
        just("kube-proxy-nftables-chain-wrong")
    );
    assert_eq!(
        broken(&|t| t
            .sets
            .get_mut("cluster-ips")
            .unwrap()
            .elem
            .push("10.1.99.99".into())),
        just("kube-proxy-nftables-table-differs")
    );
    // A flushed chain kube-proxy has not deleted yet is its normal way.
    assert_eq!(
        broken(&|t| {
            t.chains
                .insert("service-XXXXXXXX-gone/old/tcp/".into(), Default::default());
        }),
        BTreeSet::new()
    );
    // A Service without endpoints must be in no-endpoint-services.
    let mut idle = c.clone();
    idle.endpoint_slices
        .iter_mut()
        .filter(|e| e.metadata.name.as_deref() == Some("nodeport-service-lab01"))
        .for_each(|e| e.endpoints.clear());
    let idle_ids = |t: &KubeProxyTable| {
        let mut b = s.clone();
        b.kube_proxy_nft = Some(t.clone());
        ids(&idle, &b)
    };
    assert!(idle_ids(&table).contains("kube-proxy-nftables-reject-missing"));
    let net = crate::model::ClusterNetwork::from_cluster(&idle).unwrap();
    let fixed = crate::model::kube_proxy_nft::expected(&idle, NODE, Some(net.cluster_cidr));
    assert_eq!(
        idle_ids(&KubeProxyTable::from(fixed)),
        just("service-no-endpoints")
    );

    // The repair rewrites the table, with --include kube-proxy only.
    let mut b = s.clone();
    let mut t = table.table.clone();
    t.chains.remove("masquerading");
    b.kube_proxy_nft = Some(KubeProxyTable::from(t));
    let findings = run(&c, &[(NODE.to_string(), b.clone())]);
    let expected = crate::model::expect::node(
        &c,
        NODE,
        &crate::model::ClusterNetwork::from_cluster(&c).unwrap(),
        &b,
    );
    let left = crate::repair::plan(
        NODE,
        &findings,
        &b,
        || expected.clone(),
        &Default::default(),
    );
    assert!(left.steps.is_empty() && left.left_to_kube_proxy.len() == 1);
    let opts = crate::repair::Options {
        include_kube_proxy: true,
        ..Default::default()
    };
    let plan = crate::repair::plan(NODE, &findings, &b, || expected.clone(), &opts);
    assert_eq!(plan.steps.len(), 1);
    let r = plan.steps[0].nftables.as_ref().unwrap();
    assert!(
        r.replaces.contains("chain masquerading missing"),
        "{}",
        r.replaces
    );
    assert_eq!(
        r.input,
        expected.kube_proxy_nft.as_ref().unwrap().replace_commands()
    );
    assert_eq!(
        crate::dataplane::nft_table::NftTableSpec::parse_listing(
            &r.undo.replace("\"add\"", "\"_\"")
        )
        .ok(),
        None,
        "the undo is a command list, not a listing"
    );

    let t = trace_between(&c, s.clone(), BUSYBOX, "test-svc-ns/linux0224-nginx");
    assert_eq!(t.branches.len(), 3, "{:?}", t.hops);
    let nat = t
        .hops
        .iter()
        .find(|h| h.point == crate::trace::Point::NetfilterNat)
        .unwrap_or_else(|| panic!("{:?}", t.hops));
    assert_eq!(
        nat.decided_by,
        "nftables ip kube-proxy service-ips 10.1.59.153 . tcp . 80 -> service-ATYLZNHX-test-svc-ns/linux0224-nginx/tcp/"
    );
    assert_eq!(nat.verdict, crate::trace::Verdict::Ok);
    let labels: Vec<&str> = t.branches.iter().map(|b| b.label.as_str()).collect();
    assert!(
        labels.iter().all(|l| l.ends_with(":80 (p=0.333)")),
        "{labels:?}"
    );
    let t = trace_between(&c, s, "192.168.56.254", "k8s-node-12:30005");
    assert_eq!(t.branches.len(), 3, "{:?}", t.hops);

    // The ConfigMap says nftables and the node has no table.
    let mut c = c;
    let conf = [("config.conf".to_string(), "mode: nftables\n".to_string())];
    let kube_proxy = c
        .config_maps
        .iter()
        .position(|m| m.metadata.name.as_deref() == Some("kube-proxy"));
    match kube_proxy {
        Some(i) => {
            c.config_maps[i]
                .data
                .get_or_insert_with(Default::default)
                .extend(conf);
        }
        None => c.config_maps.push(k8s_openapi::api::core::v1::ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: Some("kube-system".into()),
                name: Some("kube-proxy".into()),
                ..Default::default()
            },
            data: Some(conf.into()),
            ..Default::default()
        }),
    }
    assert_eq!(node_proxy_mode(&c, &without_table), ProxyMode::Nftables);
    assert_eq!(
        ids(&c, &without_table),
        just("kube-proxy-nftables-not-programmed")
    );
}

/// Real rulesets written by the real kube-proxy (tests/fixtures/iptables/real,
/// where each came from is in tests/fixtures/README.md) for the seed cluster.
const REAL: [(&str, &str); 8] = [
    (
        "k8s-1.20-kube-proxy-node-12.nft.save",
        include_str!("../../../tests/fixtures/iptables/real/k8s-1.20-kube-proxy-node-12.nft.save"),
    ),
    (
        "k8s-1.20-kube-proxy-master-10.nft-counters.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.20-kube-proxy-master-10.nft-counters.save"
        ),
    ),
    (
        "k8s-1.32-kube-proxy-node-12.nft.save",
        include_str!("../../../tests/fixtures/iptables/real/k8s-1.32-kube-proxy-node-12.nft.save"),
    ),
    (
        "k8s-1.20-kube-proxy-node-12.legacy.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.20-kube-proxy-node-12.legacy.save"
        ),
    ),
    (
        "k8s-1.32-kube-proxy-node-12.legacy.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.32-kube-proxy-node-12.legacy.save"
        ),
    ),
    (
        "k8s-1.20-kube-proxy-master-10.legacy-counters.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.20-kube-proxy-master-10.legacy-counters.save"
        ),
    ),
    (
        "k8s-1.32-kube-proxy-master-10.nft-counters.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.32-kube-proxy-master-10.nft-counters.save"
        ),
    ),
    (
        "k8s-1.32-kube-proxy-master-10.legacy-counters.save",
        include_str!(
            "../../../tests/fixtures/iptables/real/k8s-1.32-kube-proxy-master-10.legacy-counters.save"
        ),
    ),
];

#[test]
fn real_rulesets_parse_whole_and_every_service_chain_is_its_services_hash() {
    for (name, text) in REAL {
        let rs =
            crate::dataplane::iptables::save::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rules = text
            .lines()
            .filter(|l| l.starts_with("-A ") || (l.starts_with('[') && l.contains("] -A ")))
            .count();
        assert_eq!(rs.rule_count(), rules, "{name}");
        let mut mapped = 0;
        for r in rs.specs("nat", "KUBE-SERVICES") {
            let (Some(target), Some(comment), Some(proto)) = (&r.target, &r.comment, &r.proto)
            else {
                continue;
            };
            if !target.starts_with("KUBE-SVC-") {
                continue;
            }
            // "ns/name:port cluster IP" names the service port.
            let port_name = comment.trim_end_matches(" cluster IP");
            assert_eq!(
                *target,
                crate::model::hash::svc_chain(port_name, proto),
                "{name}: {comment}"
            );
            mapped += 1;
        }
        assert_eq!(mapped, 5, "{name}: the seed cluster's five service ports");
    }
}

#[test]
fn real_rulesets_are_healthy_and_traced_to_their_own_dnat_targets() {
    for (name, text) in REAL {
        let (c, mut s) = seed();
        let node = if name.contains("master-10") {
            "k8s-master-10"
        } else {
            NODE
        };
        s.iptables[0].ruleset = crate::dataplane::iptables::save::parse(text).unwrap();
        let rs = s.iptables[0].ruleset.clone();
        if node == NODE {
            assert_eq!(ids(&c, &s), BTreeSet::new(), "{name}");
        }
        // The endpoints the dump DNATs to, by Service chain.
        let dnat_of = |svc: &str| -> BTreeSet<String> {
            rs.specs("nat", svc)
                .iter()
                .filter_map(|r| r.target.clone().filter(|t| t.starts_with("KUBE-SEP-")))
                .filter_map(|sep| {
                    rs.specs("nat", &sep)
                        .iter()
                        .find_map(|d| d.to_destination.clone())
                })
                .collect()
        };
        let nodes = vec![(node.to_string(), s.clone())];
        let findings = run(&c, &nodes);
        let findings = super::share(findings);
        let world = crate::trace::sim::World::new(&c, &nodes, &findings);
        let pod = crate::trace::resolve::resolve(
            &c,
            if node == NODE {
                "test-net/busybox-deployment-5db9ff768-zrlxw"
            } else {
                "test-svc-ns/nginx-56d58c56c7-zl6ms"
            },
            "default",
        )
        .unwrap();
        for sp in crate::model::kube_proxy::service_ports(&c) {
            let dst = crate::trace::resolve::resolve(
                &c,
                &format!("{}/{}", sp.namespace, sp.service),
                "default",
            )
            .unwrap();
            let proto = crate::trace::Proto::ALL
                .into_iter()
                .find(|p| p.name() == sp.protocol)
                .unwrap();
            let t = crate::trace::sim::trace(&world, &pod, &dst, proto, Some(sp.port));
            let traced: BTreeSet<String> = t
                .branches
                .iter()
                .filter_map(|b| {
                    b.label
                        .split("DNAT ")
                        .nth(1)?
                        .split_whitespace()
                        .next()
                        .map(str::to_string)
                })
                .collect();
            assert_eq!(traced, dnat_of(&sp.svc_chain()), "{name}: {}", sp.name());
        }
        let outside = crate::trace::resolve::resolve(&c, "192.168.56.254", "default").unwrap();
        let np = crate::trace::resolve::resolve(&c, &format!("{node}:30005"), "default").unwrap();
        let t = crate::trace::sim::trace(&world, &outside, &np, crate::trace::Proto::Tcp, None);
        assert_eq!(t.branches.len(), 3, "{name}: NodePort 30005: {:?}", t.hops);
    }
}

#[test]
fn an_unnamed_port_hashed_the_older_way_is_its_services_chain() {
    use crate::model::hash;
    let (c, mut s) = seed();
    let mut text = s.iptables[0].ruleset.render();
    // Older kube-proxy hashed an unnamed port as `ns/name:`.
    for sp in crate::model::kube_proxy::service_ports(&c)
        .iter()
        .filter(|p| p.port_name.is_empty())
    {
        let old = format!("{}/{}:", sp.namespace, sp.service);
        text = text.replace(&sp.svc_chain(), &hash::svc_chain(&old, &sp.protocol));
        text = text.replace(&sp.ext_chain(), &hash::ext_chain(&old, &sp.protocol));
        for e in &sp.endpoints {
            text = text.replace(&sp.sep_chain(e), &hash::sep_chain(&old, &sp.protocol, e));
        }
    }
    assert_ne!(
        text,
        s.iptables[0].ruleset.render(),
        "the seed has unnamed ports"
    );
    s.iptables[0].ruleset = crate::dataplane::iptables::save::parse(&text).unwrap();
    assert_eq!(ids(&c, &s), BTreeSet::new());
}

#[test]
fn a_reject_for_a_service_that_has_endpoints_is_stale_kube_proxy_state() {
    let (c, mut s) = seed();
    // As kube-proxy 1.20 writes it for a Service it believes has no endpoints.
    s.iptables[0].ruleset.table_mut("filter").append(
        "KUBE-SERVICES",
        "-d 10.1.59.153/32 -p tcp -m comment --comment \"test-svc-ns/linux0224-nginx has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable",
    );
    assert_eq!(ids(&c, &s), just("kube-proxy-reject-stale"));
}

#[test]
fn a_table_looked_up_before_main_takes_pod_cidrs_as_the_kernel_does() {
    let (c, mut s) = seed();
    let main = s
        .rules
        .iter()
        .find(|r| r.family == "inet" && r.table == 254)
        .cloned()
        .unwrap();
    // `ip rule add pref 100 lookup 100` and a default route in table 100.
    let mut rule = main.clone();
    rule.priority = 100;
    rule.table = 100;
    s.rules.push(rule);
    let mut r = s
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "192.168.56.0/24")
        .cloned()
        .unwrap();
    r.dst = crate::dataplane::RouteDst::Default;
    r.table = 100;
    r.protocol = "boot".into();
    r.scope = "global".into();
    r.prefsrc = None;
    r.gateway = Some("192.168.56.1".parse().unwrap());
    s.routes.push(r.clone());
    let found = run(&c, &[(NODE.to_string(), s.clone())]);
    let shadow: Vec<_> = found
        .iter()
        .filter(|f| f.id == FindingId::RouteShadowsPodCidr)
        .collect();
    assert_eq!(shadow.len(), 1, "{found:#?}");
    assert!(
        shadow[0].summary.contains("in table 100"),
        "{}",
        shadow[0].summary
    );
    assert_eq!(
        shadow[0].repair,
        [crate::check::RepairAction::RouteDelete {
            dst: crate::dataplane::RouteDst::Default,
            table: 100
        }]
    );
    // Looked up after main, the same route takes nothing.
    s.rules
        .iter_mut()
        .filter(|x| x.table == 100)
        .for_each(|x| x.priority = 40000);
    assert_eq!(ids(&c, &s), BTreeSet::new());
}

/// A dual-stack cluster (flannel `EnableIPv6`, nodes with an IPv6 pod
/// CIDR, a Service whose first ClusterIP is IPv6) is read, not rejected:
/// the IPv6 leases and network are parsed and kept, the IPv4 overlay and
/// kube-proxy's IPv4 proxier are checked as before; an IPv6-only node is
/// said to be outside what is checked, not called broken.
#[test]
fn dual_stack_objects_are_parsed_and_the_ipv4_side_is_checked() {
    use crate::model::flannel::{Lease, annotation};
    let (mut c, s) = seed();
    for n in c.nodes.iter_mut() {
        let v4 = n.spec.as_ref().unwrap().pod_cidr.clone().unwrap();
        let third = v4.split('.').nth(2).unwrap().to_string();
        let spec = n.spec.as_mut().unwrap();
        spec.pod_cidrs = Some(vec![v4, format!("fd00:10:2:{third}::/64")]);
        let a = n.metadata.annotations.get_or_insert_with(Default::default);
        a.insert(annotation::PUBLIC_IPV6.into(), format!("fd00:56::{third}"));
        a.insert(
            annotation::BACKEND_V6_DATA.into(),
            r#"{"VNI":1,"VtepMAC":"6e:00:00:00:00:01"}"#.into(),
        );
    }
    for m in c.config_maps.iter_mut() {
        if let Some(conf) = m.data.as_mut().and_then(|d| d.get_mut("net-conf.json")) {
            *conf = conf.replace(
                "\"Network\"",
                "\"EnableIPv6\": true,\n  \"IPv6Network\": \"fd00:10:2::/48\",\n  \"Network\"",
            );
        }
    }
    for svc in c.services.iter_mut() {
        if svc.metadata.name.as_deref() == Some("linux0224-nginx") {
            let spec = svc.spec.as_mut().unwrap();
            spec.cluster_ip = Some("fd00:10:1::1234".into());
            spec.cluster_ips = Some(vec!["fd00:10:1::1234".into(), "10.1.59.153".into()]);
            spec.ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        }
    }
    c.invalidate_index();
    let lease = Lease::from_node(c.node(NODE).unwrap()).unwrap();
    let v6 = lease.v6.expect("the IPv6 lease is read");
    assert_eq!(v6.pod_cidr.to_string(), "fd00:10:2:2::/64");
    assert_eq!(v6.public_ip.unwrap().to_string(), "fd00:56::2");
    assert_eq!(v6.vtep_mac.unwrap().to_string(), "6e:00:00:00:00:01");
    let net = crate::model::ClusterNetwork::from_cluster(&c).unwrap();
    assert_eq!(net.ipv6_cidr.unwrap().to_string(), "fd00:10:2::/48");
    assert_eq!(ids(&c, &s), BTreeSet::new(), "the IPv4 side is healthy");
    let nginx = crate::model::kube_proxy::service_ports_of(&c, "test-svc-ns", "linux0224-nginx");
    assert_eq!(nginx[0].cluster_ip.to_string(), "10.1.59.153");
    let end = crate::trace::resolve::resolve(&c, "test-svc-ns/linux0224-nginx", "default").unwrap();
    assert!(format!("{end:?}").contains("10.1.59.153"), "{end:?}");
    // Both addresses lead to the Service.
    assert!(
        c.index()
            .services
            .service_by_vip
            .keys()
            .any(|(ip, _)| ip == "fd00:10:1::1234")
    );

    // An IPv6-only node: said, at Info, and not a broken lease.
    c.nodes[0].spec.as_mut().unwrap().pod_cidr = Some("fd00:10:2:9::/64".into());
    c.invalidate_index();
    let findings = run(&c, &[(NODE.to_string(), s.clone())]);
    let v6only: Vec<_> = findings
        .iter()
        .filter(|f| f.id == FindingId::NodeIpv6Only)
        .collect();
    assert_eq!(v6only.len(), 1, "{findings:#?}");
    assert_eq!(v6only[0].severity, crate::check::Severity::Info);
    assert!(!findings.iter().any(|f| f.id == FindingId::NodeNoPodCidr));
}

/// flannel in nftables mode (`EnableNFTables`): its FLANNEL-* iptables
/// chains are not expected; its `table ip flannel-ipv4` is, chain for
/// chain, and a broken one is rewritten by flannel's own repair (no
/// --include needed).
#[test]
fn flannel_nftables_mode_is_checked_by_its_table() {
    let (mut c, mut s) = seed();
    for m in c.config_maps.iter_mut() {
        if let Some(conf) = m.data.as_mut().and_then(|d| d.get_mut("net-conf.json")) {
            *conf = conf.replacen('{', "{\"EnableNFTables\": true,", 1);
        }
    }
    c.invalidate_index();
    let net = crate::model::ClusterNetwork::from_cluster(&c).unwrap();
    assert!(net.nftables);
    s.iptables[0]
        .ruleset
        .tables
        .iter_mut()
        .for_each(|t| t.retain_chains(|c| !c.name.starts_with("FLANNEL-")));
    for t in &mut s.iptables[0].ruleset.tables {
        for (_, rules) in t.rules_mut() {
            rules.retain(|r| !r.contains("FLANNEL-"));
        }
    }
    assert_eq!(ids(&c, &s), just("flannel-nftables-not-programmed"));
    let table = crate::model::flannel_nft::table(net.cluster_cidr, "10.2.2.0/24".parse().unwrap());
    s.flannel_nft = Some(table.clone());
    assert_eq!(ids(&c, &s), BTreeSet::new());
    let mut broken = s.clone();
    broken
        .flannel_nft
        .as_mut()
        .unwrap()
        .chains
        .remove("postrtg");
    assert_eq!(ids(&c, &broken), just("flannel-nftables-chain-wrong"));
    let findings = run(&c, &[(NODE.to_string(), broken.clone())]);
    let plan = crate::repair::plan(
        NODE,
        &findings,
        &broken,
        || crate::model::expect::node(&c, NODE, &net, &broken),
        &Default::default(),
    );
    assert_eq!(plan.steps.len(), 1, "{plan:#?}");
    let r = plan.steps[0].nftables.as_ref().unwrap();
    assert_eq!(r.input, table.replace_commands());
    assert_eq!(
        r.undo,
        broken.flannel_nft.as_ref().unwrap().replace_commands()
    );
}

/// A Service port without endpoints on a node in kube-proxy's nftables
/// mode: trace names the `no-endpoint-services` reject, not a missing
/// element.
#[test]
fn nftables_mode_traces_a_port_without_endpoints_to_its_reject() {
    use crate::dataplane::nftables::KubeProxyTable;
    let (mut c, mut s) = seed();
    c.endpoint_slices
        .iter_mut()
        .filter(|e| e.metadata.name.as_deref() == Some("nodeport-service-lab01"))
        .for_each(|e| e.endpoints.clear());
    c.invalidate_index();
    s.iptables[0]
        .ruleset
        .tables
        .iter_mut()
        .for_each(|t| t.retain_chains(|c| !c.name.starts_with("KUBE-")));
    s.nft_tables = vec![crate::dataplane::nftables::NftTable {
        family: "ip".into(),
        name: "kube-proxy".into(),
    }]
    .into();
    let net = crate::model::ClusterNetwork::from_cluster(&c).unwrap();
    s.kube_proxy_nft = Some(KubeProxyTable::from(
        crate::model::kube_proxy_nft::expected(&c, NODE, Some(net.cluster_cidr)),
    ));
    let t = trace_between(&c, s, BUSYBOX, "test-svc-ns/nodeport-service");
    let last = t.hops.last().unwrap();
    assert_eq!(
        last.decided_by, "nftables ip kube-proxy no-endpoint 10.1.61.17 . tcp . 80 -> reject-chain",
        "{:?}",
        t.hops
    );
}

/// The seed's busybox pod (on k8s-node-12).
const BUSYBOX: &str = "test-net/busybox-deployment-5db9ff768-zrlxw";

/// The TCP trace from `src` to `dst` with k8s-node-12's state `s`.
fn trace_between(c: &Cluster, s: NodeState, src: &str, dst: &str) -> crate::trace::Trace {
    let nodes = vec![(NODE.to_string(), s)];
    let findings = run(c, &nodes);
    let findings = super::share(findings);
    let world = crate::trace::sim::World::new(c, &nodes, &findings);
    let src = crate::trace::resolve::resolve(c, src, "default").unwrap();
    let dst = crate::trace::resolve::resolve(c, dst, "default").unwrap();
    crate::trace::sim::trace(&world, &src, &dst, crate::trace::Proto::Tcp, None)
}

/// A reader the API server refused some lists to: what was refused is
/// said once with the checks it skips, those checks are not judged against
/// the empty lists (every KUBE-SVC chain would look stale, every peer's
/// route unexpected), and the checks that do not need it still find what
/// they find. Exit 5 when nothing else is wrong.
#[test]
fn refused_lists_skip_what_reads_them_and_nothing_else() {
    use crate::model::reading::{ApiKind, Unreadable};
    let refused = |kind, ns: Option<&str>| Unreadable {
        kind,
        namespace: ns.map(str::to_string),
        code: 403,
        message: format!("{kind:?} is forbidden: User \"lab-ns\" cannot list resource"),
        read_instead: None,
    };
    let (full, mut s) = seed();
    // What a namespace-limited reader sees: no Nodes, no Services outside
    // its namespace, no kube-system ConfigMaps.
    let mut c = full.clone();
    c.nodes.clear();
    c.services.clear();
    c.endpoint_slices.clear();
    c.config_maps.clear();
    c.unread = vec![
        refused(ApiKind::Nodes, None),
        refused(ApiKind::Services, None),
        refused(ApiKind::Endpoints, None),
        refused(ApiKind::ConfigMaps, Some("kube-system")),
        refused(ApiKind::ConfigMaps, Some("kube-flannel")),
    ];
    c.invalidate_index();
    let findings = run(&c, &[(NODE.to_string(), s.clone())]);
    let got: BTreeSet<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(got, ["api-unreadable"].into(), "{findings:#?}");
    assert_eq!(findings.len(), 5);
    let endpoints = findings
        .iter()
        .find(|f| f.summary.starts_with("Endpoints in all namespaces"))
        .unwrap();
    assert!(
        endpoints.summary.contains("forbidden → kube-proxy rule checks, Service endpoint checks, kube-dns checks, Ingress checks skipped"),
        "{}",
        endpoints.summary
    );
    assert_eq!(super::exit_code(&findings), super::INCOMPLETE);

    // What still stands is judged: a node-local fault (a sysctl) and a
    // pod's veth, which read neither Nodes nor Services.
    s.sysctls.ip_forward = Some(false);
    let findings = run(&c, &[(NODE.to_string(), s.clone())]);
    assert!(findings.iter().any(|f| f.id == FindingId::IpForwardOff));
    assert_eq!(super::exit_code(&findings), 1);
    // The same fault on the complete reading is found as well: skipping
    // did not hide it, and a complete reading says nothing of unread.
    let findings = run(&full, &[(NODE.to_string(), s)]);
    assert!(findings.iter().any(|f| f.id == FindingId::IpForwardOff));
    assert!(!findings.iter().any(|f| f.id == FindingId::ApiUnreadable));
}
