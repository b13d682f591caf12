//! The table kube-proxy's nftables mode writes (`table ip kube-proxy`),
//! mirrored from kubernetes 1.32 `pkg/proxy/nftables/proxier.go`
//! (`setupNFTables` and `syncProxyRules`): base chains hooked at
//! dstnat-10 / dstnat / srcnat, the `services` dispatch through the
//! `service-ips` and `service-nodeports` verdict maps, a `service-…` chain
//! per Service port choosing an `endpoint-…` chain with `numgen random`,
//! `no-endpoint-services` rejecting ports without endpoints, and
//! `mark-for-masquerade` / `masquerading` for SNAT. Chain names are
//! kube-proxy's own: an 8-character base32 sha256 of the port's name.
//!
//! What the model leaves out, as the iptables model does: ExternalIPs,
//! LoadBalancer addresses and their source ranges, and Local traffic
//! policies (the lab's and the seeds' Services use none).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cluster::Cluster;
use super::kube_proxy::ServicePort;
use crate::dataplane::nft_table::{BaseChain, NftChain, NftRule, NftSet, NftTableSpec, SetKind};

/// kube-proxy's masquerade mark (bit 14), as a number.
const MASQ_MARK: u64 = 0x4000;

/// `hashAndTruncate`: the first 8 characters of the base32 sha256 of
/// `name`, a dash, then `name` (never over nftables' 256 in practice).
fn hash_and_truncate(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    format!("{}-{name}", &data_encoding::BASE32.encode(&digest)[..8])
}

impl ServicePort {
    /// `ns/svc/proto/port-name`: the part of kube-proxy's nftables chain
    /// names that says which Service port they serve.
    fn nft_base(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.service, self.protocol, self.port_name
        )
    }
    /// `service-HASH-ns/svc/proto/port`: the port's cluster-policy chain.
    pub fn nft_service_chain(&self) -> String {
        format!("service-{}", hash_and_truncate(&self.nft_base()))
    }
    /// `external-HASH-…`: where NodePort traffic goes first.
    pub fn nft_external_chain(&self) -> String {
        format!("external-{}", hash_and_truncate(&self.nft_base()))
    }
    /// `endpoint-HASH-…__IP/port`: the chain that DNATs to one endpoint.
    pub fn nft_endpoint_chain(&self, endpoint: &str) -> String {
        let (ip, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
        format!(
            "endpoint-{}",
            hash_and_truncate(&format!("{}__{ip}/{port}", self.nft_base()))
        )
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}
fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}
fn goto(target: &str) -> Value {
    json!({"goto": {"target": target}})
}
fn ct_new() -> Value {
    matches("in", json!({"ct": {"key": "state"}}), json!("new"))
}
fn reject() -> Value {
    json!({"reject": {"type": "icmp", "expr": "port-unreachable"}})
}
/// `ip daddr . meta l4proto . th dport vmap @MAP`.
fn dispatch(map: &str) -> Value {
    json!({"vmap": {
        "key": {"concat": [payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")]},
        "data": format!("@{map}"),
    }})
}
/// `ip daddr @nodeport-ips meta l4proto . th dport vmap @MAP`.
fn nodeport_dispatch(map: &str) -> [Value; 2] {
    [
        matches("==", payload("ip", "daddr"), json!("@nodeport-ips")),
        json!({"vmap": {
            "key": {"concat": [meta("l4proto"), payload("th", "dport")]},
            "data": format!("@{map}"),
        }}),
    ]
}
fn mark(op: &str) -> Value {
    json!({"mangle": {"key": meta("mark"), "value": {op: [meta("mark"), MASQ_MARK]}}})
}

fn set(kind: SetKind, key_type: Value) -> NftSet {
    NftSet {
        kind,
        key_type,
        map: (kind == SetKind::Map).then(|| "verdict".to_string()),
        flags: None,
        timeout: None,
        elem: Vec::new(),
    }
}

fn base(chain_type: &str, hook: &str, prio: i64) -> NftChain {
    NftChain {
        base: Some(BaseChain::accepting(chain_type, hook, prio)),
        rules: Vec::new(),
    }
}

/// The node's IPv4 InternalIPs: where kube-proxy 1.32 accepts NodePort
/// traffic by default (`--nodeport-addresses primary`).
pub fn nodeport_ips(cluster: &Cluster, node: &str) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = cluster
        .node(node)
        .into_iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    ips.sort();
    ips
}

/// The table kube-proxy writes on a node whose InternalIPs are
/// `nodeport_ips`, for `ports`, detecting local traffic by `cluster_cidr`.
pub fn table(
    ports: &[ServicePort],
    cluster_cidr: Option<Ipv4Net>,
    nodeport_ips: &[Ipv4Addr],
) -> NftTableSpec {
    let mut t = NftTableSpec::new("ip", "kube-proxy");
    let chains = &mut t.chains;
    // setupNFTables: the base chains and the jumps out of them.
    for (name, ty, hook, prio) in [
        ("filter-prerouting", "filter", "prerouting", -110),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ] {
        chains.insert(name.into(), base(ty, hook, prio));
    }
    for (to, from, new_only) in [
        ("nodeport-endpoints-check", "filter-input", true),
        ("service-endpoints-check", "filter-input", true),
        ("service-endpoints-check", "filter-forward", true),
        ("service-endpoints-check", "filter-output", true),
        ("firewall-check", "filter-prerouting", true),
        ("firewall-check", "filter-output", true),
        ("services", "nat-output", false),
        ("services", "nat-prerouting", false),
        ("masquerading", "nat-postrouting", false),
        ("cluster-ips-check", "filter-forward", true),
        ("cluster-ips-check", "filter-output-post-dnat", true),
    ] {
        chains.entry(to.into()).or_default();
        let expr = if new_only {
            vec![ct_new(), jump(to)]
        } else {
            vec![jump(to)]
        };
        let c = chains.entry(from.into()).or_default();
        c.rules.push(NftRule::of(expr));
    }
    let rules =
        |chains: &mut std::collections::BTreeMap<String, NftChain>, name: &str, r: Vec<NftRule>| {
            chains.entry(name.into()).or_default().rules.extend(r);
        };
    rules(
        chains,
        "mark-for-masquerade",
        vec![NftRule::of(vec![mark("|")])],
    );
    rules(
        chains,
        "masquerading",
        vec![
            NftRule::of(vec![
                matches("==", json!({"&": [meta("mark"), MASQ_MARK]}), json!(0)),
                json!({"return": null}),
            ]),
            NftRule::of(vec![mark("^")]),
            NftRule::of(vec![json!({"masquerade": {"flags": "fully-random"}})]),
        ],
    );
    rules(
        chains,
        "cluster-ips-check",
        vec![NftRule {
            expr: vec![
                matches("==", payload("ip", "daddr"), json!("@cluster-ips")),
                reject(),
            ],
            comment: Some("Reject traffic to invalid ports of ClusterIPs".into()),
        }],
    );
    rules(chains, "reject-chain", vec![NftRule::of(vec![reject()])]);
    rules(
        chains,
        "service-endpoints-check",
        vec![NftRule::of(vec![dispatch("no-endpoint-services")])],
    );
    rules(
        chains,
        "nodeport-endpoints-check",
        vec![NftRule::of(
            nodeport_dispatch("no-endpoint-nodeports").to_vec(),
        )],
    );
    rules(
        chains,
        "firewall-check",
        vec![NftRule::of(vec![dispatch("firewall-ips")])],
    );
    rules(
        chains,
        "services",
        vec![
            NftRule::of(vec![dispatch("service-ips")]),
            NftRule::of(nodeport_dispatch("service-nodeports").to_vec()),
        ],
    );

    let addr = || json!("ipv4_addr");
    let addr_port = || json!(["ipv4_addr", "inet_proto", "inet_service"]);
    let proto_port = || json!(["inet_proto", "inet_service"]);
    // kube-proxy comments each set ("Active ClusterIPs", …); set comments
    // do not survive nft's JSON (see nft_table), so they are not modelled.
    for (name, kind, ty) in [
        ("cluster-ips", SetKind::Set, addr()),
        ("nodeport-ips", SetKind::Set, addr()),
        ("no-endpoint-services", SetKind::Map, addr_port()),
        ("no-endpoint-nodeports", SetKind::Map, proto_port()),
        ("firewall-ips", SetKind::Map, addr_port()),
        ("service-ips", SetKind::Map, addr_port()),
        ("service-nodeports", SetKind::Map, proto_port()),
    ] {
        t.sets.insert(name.into(), set(kind, ty));
    }
    let elem = |t: &mut NftTableSpec, set: &str, e: Value| {
        if let Some(s) = t.sets.get_mut(set) {
            s.elem.push(e);
        }
    };
    for ip in nodeport_ips {
        elem(&mut t, "nodeport-ips", json!(ip.to_string()));
    }

    // syncProxyRules: each Service port.
    for sp in ports {
        let vip = || json!({"concat": [sp.cluster_ip.to_string(), sp.protocol, sp.port]});
        elem(&mut t, "cluster-ips", json!(sp.cluster_ip.to_string()));
        if sp.endpoints.is_empty() {
            // kube-proxy comments these elements; nft 1.0.6 lists no
            // element comments in JSON, so they are not compared.
            elem(
                &mut t,
                "no-endpoint-services",
                json!([vip(), goto("reject-chain")]),
            );
            if let Some(np) = sp.node_port {
                elem(
                    &mut t,
                    "no-endpoint-nodeports",
                    json!([{"concat": [sp.protocol, np]}, goto("reject-chain")]),
                );
            }
            continue;
        }
        let svc = sp.nft_service_chain();
        elem(&mut t, "service-ips", json!([vip(), goto(&svc)]));
        let mut svc_rules = Vec::new();
        if let Some(cidr) = cluster_cidr {
            svc_rules.push(NftRule::of(vec![
                matches("==", payload("ip", "daddr"), json!(sp.cluster_ip.to_string())),
                matches("==", payload(&sp.protocol, "dport"), json!(sp.port)),
                matches(
                    "!=",
                    payload("ip", "saddr"),
                    json!({"prefix": {"addr": cidr.network().to_string(), "len": cidr.prefix_len()}}),
                ),
                jump("mark-for-masquerade"),
            ]));
        }
        if let Some(np) = sp.node_port {
            let ext = sp.nft_external_chain();
            elem(
                &mut t,
                "service-nodeports",
                json!([{"concat": [sp.protocol, np]}, goto(&ext)]),
            );
            t.chains.insert(
                ext,
                NftChain {
                    base: None,
                    rules: vec![
                        NftRule::of(vec![jump("mark-for-masquerade")]),
                        NftRule::of(vec![goto(&svc)]),
                    ],
                },
            );
        }
        let endpoint_chains: Vec<String> = sp
            .endpoints
            .iter()
            .map(|e| sp.nft_endpoint_chain(e))
            .collect();
        if let Some(secs) = sp.affinity_seconds {
            for chain in &endpoint_chains {
                let affinity = chain.replacen("endpoint-", "affinity-", 1);
                svc_rules.push(NftRule::of(vec![
                    matches("==", payload("ip", "saddr"), json!(format!("@{affinity}"))),
                    goto(chain),
                ]));
                t.sets.insert(
                    affinity,
                    NftSet {
                        kind: SetKind::Set,
                        key_type: addr(),
                        map: None,
                        flags: Some(json!(["timeout", "dynamic"])),
                        timeout: Some(json!(secs)),
                        elem: Vec::new(),
                    },
                );
            }
        }
        let choices: Vec<Value> = endpoint_chains
            .iter()
            .enumerate()
            .map(|(i, c)| json!([i, goto(c)]))
            .collect();
        svc_rules.push(NftRule::of(vec![json!({"vmap": {
            "key": {"numgen": {"mode": "random", "mod": endpoint_chains.len(), "offset": 0}},
            "data": {"set": choices},
        }})]));
        t.chains.insert(
            svc,
            NftChain {
                base: None,
                rules: svc_rules,
            },
        );
        for (ep, chain) in sp.endpoints.iter().zip(&endpoint_chains) {
            let (ip, port) = ep.rsplit_once(':').unwrap_or((ep, "0"));
            let mut rules = vec![NftRule::of(vec![
                matches("==", payload("ip", "saddr"), json!(ip)),
                jump("mark-for-masquerade"),
            ])];
            if sp.affinity_seconds.is_some() {
                let affinity = chain.replacen("endpoint-", "affinity-", 1);
                rules.push(NftRule::of(vec![json!({"set": {
                    "op": "update",
                    "elem": payload("ip", "saddr"),
                    "set": format!("@{affinity}"),
                }})]));
            }
            rules.push(NftRule::of(vec![
                matches("==", meta("l4proto"), json!(sp.protocol)),
                json!({"dnat": {"addr": ip, "port": port.parse::<u16>().unwrap_or(0)}}),
            ]));
            t.chains
                .insert(chain.clone(), NftChain { base: None, rules });
        }
    }
    t.normalize();
    t
}

/// The table kube-proxy writes on `node` of `cluster`.
pub fn expected(cluster: &Cluster, node: &str, cluster_cidr: Option<Ipv4Net>) -> NftTableSpec {
    for_node(
        &super::kube_proxy::service_ports(cluster),
        cluster,
        node,
        cluster_cidr,
    )
}

/// [`expected`] for `ports` already listed.
pub fn for_node(
    ports: &[ServicePort],
    cluster: &Cluster,
    node: &str,
    cluster_cidr: Option<Ipv4Net>,
) -> NftTableSpec {
    table(ports, cluster_cidr, &nodeport_ips(cluster, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::nft_table::TableDiff;

    /// The judge is the real kube-proxy 1.32: the table it wrote on the
    /// seed lab's k8s-node-12 (tests/fixtures/nftables/real) is the table
    /// this model writes for the same objects, chain for chain and element
    /// for element.
    #[test]
    fn the_seed_cluster_gets_the_table_the_real_kube_proxy_wrote() {
        let real = NftTableSpec::parse_listing(include_str!(
            "../../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.ip-kube-proxy.json"
        ))
        .unwrap();
        let (cluster, _) = crate::check::fixtures::seed();
        let cidr = "10.2.0.0/16".parse().ok();
        let ours = expected(&cluster, "k8s-node-12", cidr);
        assert_eq!(ours.diff(&real), Vec::<TableDiff>::new());
        assert_eq!(ours, real);
    }

    #[test]
    fn a_port_without_endpoints_is_rejected_and_has_no_chain() {
        let sp = ServicePort {
            namespace: "test-svc-ns".into(),
            service: "idle".into(),
            port_name: "http".into(),
            protocol: "tcp".into(),
            cluster_ip: "10.1.3.4".parse().unwrap(),
            port: 80,
            node_port: Some(30080),
            affinity_seconds: None,
            endpoints: Vec::new(),
        };
        let t = table(std::slice::from_ref(&sp), None, &[]);
        assert!(t.sets["service-ips"].elem.is_empty());
        assert_eq!(
            t.sets["no-endpoint-services"].elem,
            [json!([{"concat": ["10.1.3.4", "tcp", 80]}, {"goto": {"target": "reject-chain"}}])]
        );
        assert_eq!(t.sets["no-endpoint-nodeports"].elem.len(), 1);
        assert!(!t.chains.contains_key(&sp.nft_service_chain()));
        assert!(sp.nft_service_chain().starts_with("service-"));
        assert!(
            sp.nft_service_chain()
                .ends_with("-test-svc-ns/idle/tcp/http")
        );
    }
}
