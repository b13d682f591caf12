//! The chains kube-proxy in iptables mode writes for the cluster's Services,
//! mirrored from kubernetes `pkg/proxy/iptables`: KUBE-SERVICES ->
//! KUBE-SVC-<hash> -> KUBE-SEP-<hash> (DNAT), with `-m statistic` spreading
//! load 1/n, 1/(n-1), ...; KUBE-NODEPORTS -> KUBE-EXT-<hash>; KUBE-MARK-MASQ
//! and KUBE-POSTROUTING for SNAT; REJECT rules for Services without
//! endpoints; `-m recent` for ClientIP session affinity.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
use super::hash;
use crate::dataplane::iptables::Ruleset;

/// The dummy device kube-proxy's IPVS mode binds every ClusterIP to.
pub const IPVS_DEVICE: &str = "kube-ipvs0";

/// How kube-proxy programs Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    Ipvs,
    Nftables,
}

/// kube-proxy's mode from its ConfigMap (`config.conf`, KubeProxyConfiguration);
/// an empty or absent mode is iptables, kube-proxy's default on Linux.
pub fn proxy_mode(cluster: &Cluster) -> ProxyMode {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        mode: String,
    }
    let mode = cluster
        .config_map("kube-system", "kube-proxy")
        .and_then(|c| c.data.as_ref()?.get("config.conf").cloned())
        .and_then(|text| serde_yaml_ng::from_str::<Config>(&text).ok())
        .map(|c| c.mode)
        .unwrap_or_default();
    match mode.as_str() {
        "ipvs" => ProxyMode::Ipvs,
        "nftables" => ProxyMode::Nftables,
        _ => ProxyMode::Iptables,
    }
}

/// The mode kube-proxy programs `state`'s node in: the kernel's word over
/// the ConfigMap's. A node whose only kube-proxy rules are nftables' `ip
/// kube-proxy` table runs nftables mode (kube-proxy started with
/// `--proxy-mode=nftables` leaves the ConfigMap saying nothing), one with
/// KUBE-SERVICES in iptables runs iptables mode; otherwise the ConfigMap.
pub fn node_proxy_mode(cluster: &Cluster, state: &crate::dataplane::NodeState) -> ProxyMode {
    let configured = proxy_mode(cluster);
    if configured == ProxyMode::Ipvs {
        return configured;
    }
    let iptables = state.iptables.iter().any(|b| {
        b.ruleset
            .table("nat")
            .is_some_and(|t| t.chain("KUBE-SERVICES").is_some())
    });
    let nftables = crate::dataplane::nftables::has_kube_proxy(&state.nft_tables);
    match (iptables, nftables) {
        (false, true) => ProxyMode::Nftables,
        (true, false) => ProxyMode::Iptables,
        _ => configured,
    }
}

/// Above this many endpoints in total, kube-proxy stops writing rule comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;
/// kube-proxy's masquerade mark (bit 14).
pub const MASQ_MARK: &str = "0x4000";

/// One Service port as kube-proxy sees it, with its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    /// The port's name ("" when unnamed).
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Seconds of ClientIP affinity, when the Service asks for it.
    pub affinity_seconds: Option<i32>,
    /// Ready endpoints as `IP:port`, sorted as kube-proxy sorts them.
    pub endpoints: Vec<String>,
}

impl ServicePort {
    /// `ns/name[:port]`, the string kube-proxy hashes.
    pub fn name(&self) -> String {
        hash::service_port_name(&self.namespace, &self.service, &self.port_name)
    }
    /// `KUBE-SVC-<hash>`.
    pub fn svc_chain(&self) -> String {
        hash::svc_chain(&self.name(), &self.protocol)
    }
    /// Every name kube-proxy versions have hashed this port under: today's
    /// `ns/name[:port]`, and for an unnamed port also `ns/name:`, as older
    /// kube-proxy printed every ServicePortName (public dumps show comments
    /// like `"default/nginx:"` above such chains).
    pub fn hashed_names(&self) -> Vec<String> {
        let mut v = vec![self.name()];
        if self.port_name.is_empty() {
            v.push(format!("{}/{}:", self.namespace, self.service));
        }
        v
    }
    /// `KUBE-EXT-<hash>`.
    pub fn ext_chain(&self) -> String {
        hash::ext_chain(&self.name(), &self.protocol)
    }
    /// `KUBE-SEP-<hash>` for one endpoint.
    pub fn sep_chain(&self, endpoint: &str) -> String {
        hash::sep_chain(&self.name(), &self.protocol, endpoint)
    }
}

/// Whether a KUBE-SERVICES or KUBE-NODEPORTS rule's target is the chain a
/// Service's traffic goes on to, rather than a mark on the way: kube-proxy
/// up to 1.23 writes `-j KUBE-MARK-MASQ` for the same address and port just
/// before the `-j KUBE-SVC-…` rule (pkg/proxy/iptables/proxier.go, "Capture
/// the clusterIP" and the nodePort rules); later versions jump to KUBE-EXT-
/// (NodePorts) and KUBE-SVL- (Local policy), and KUBE-FW-/KUBE-XLB- serve
/// load balancers.
pub fn leads_to_service(target: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-XLB-",
    ]
    .iter()
    .any(|p| target.starts_with(p))
}

/// Every proxied Service port (ClusterIP set, not headless) with its ready
/// endpoints from the EndpointSlices labelled with the Service's name.
pub fn service_ports(cluster: &Cluster) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for (ns, name, spec, _) in cluster.service_specs() {
        out.extend(ports_of(cluster, ns, name, spec));
    }
    sort_ports(&mut out);
    out
}

/// kube-proxy's order: by hashed name and protocol (each name formatted
/// once, not per comparison).
fn sort_ports(ports: &mut [ServicePort]) {
    ports.sort_by_cached_key(|sp| (sp.name(), sp.protocol.clone()));
}

/// [`service_ports`] from the ones before (taken, not copied), with the
/// ports of the Services named (those a change touched) worked out again
/// and put in their places, found by bisection ([`ports_of_service`]):
/// the 10,000 others are neither copied, sorted nor visited again.
pub fn service_ports_after(
    cluster: &Cluster,
    before: Vec<ServicePort>,
    changed: &BTreeSet<(String, String)>,
) -> Vec<ServicePort> {
    let mut out = before;
    let key = |sp: &ServicePort| (sp.name(), sp.protocol.clone());
    for (ns, name) in changed {
        let now = service_ports_of(cluster, ns, name);
        let [unnamed, named] = ports_of_service(&out, ns, name);
        let slots = unnamed.clone().chain(named.clone());
        // The same ports (an endpoint came or went): each where it was.
        if slots.clone().count() == now.len()
            && slots.clone().map(|i| key(&out[i])).eq(now.iter().map(key))
        {
            for (i, sp) in slots.zip(now) {
                out[i] = sp;
            }
            continue;
        }
        out.drain(named);
        out.drain(unnamed);
        for sp in now {
            // After its equals: as the stable sort of the kept ports
            // followed by these would place it.
            let k = key(&sp);
            let at = out.partition_point(|o| key(o) <= k);
            out.insert(at, sp);
        }
    }
    out
}

/// Where Service `namespace/name`'s ports are in `ports` (sorted as
/// [`service_ports`] sorts them): an unnamed port is hashed as
/// `ns/name`, named ones as `ns/name:port`, and names sharing a prefix sort
/// together, so they are two runs at most — found by bisection, no name
/// formatted (a watch event's Service among 10,000 Services' ports).
pub fn ports_of_service(
    ports: &[ServicePort],
    namespace: &str,
    name: &str,
) -> [std::ops::Range<usize>; 2] {
    use std::cmp::Ordering::{Greater, Less};
    // `sp.name()`'s bytes compared with `to`'s, without building it.
    let cmp = |sp: &ServicePort, to: &[u8]| {
        let sep: &[u8] = if sp.port_name.is_empty() { b"" } else { b":" };
        (sp.namespace.bytes().chain(*b"/"))
            .chain(sp.service.bytes())
            .chain(sep.iter().copied())
            .chain(sp.port_name.bytes())
            .cmp(to.iter().copied())
    };
    let unnamed = format!("{namespace}/{name}");
    let (first, after) = (format!("{unnamed}:"), format!("{unnamed};"));
    let start = ports.partition_point(|sp| cmp(sp, unnamed.as_bytes()) == Less);
    let end = ports.partition_point(|sp| cmp(sp, unnamed.as_bytes()) != Greater);
    let named_start = ports.partition_point(|sp| cmp(sp, first.as_bytes()) == Less);
    let named_end = ports.partition_point(|sp| cmp(sp, after.as_bytes()) == Less);
    [start..end, named_start..named_end]
}

/// [`service_ports`] of one Service, without visiting the others (the
/// dashboard opens one Service of 10,000).
pub fn service_ports_of(cluster: &Cluster, namespace: &str, name: &str) -> Vec<ServicePort> {
    let mut out: Vec<ServicePort> = cluster
        .service(namespace, name)
        .and_then(|s| s.spec.as_ref())
        .map(|spec| ports_of(cluster, namespace, name, spec))
        .unwrap_or_default();
    sort_ports(&mut out);
    out
}

/// The ports kube-proxy programs for one Service spec.
fn ports_of(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
) -> Vec<ServicePort> {
    let mut out = Vec::new();
    // kube-proxy's IPv4 proxier serves the IPv4 address of `clusterIPs`
    // (a dual-stack Service's first may be IPv6); an IPv6-only Service is
    // the IPv6 proxier's, which the lab and the checks do not cover.
    let Some(cluster_ip) = super::cluster::service_ipv4(spec) else {
        return out;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return out;
    }
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800)
    });
    for p in spec.ports.iter().flatten() {
        let port_name = p.name.clone().unwrap_or_default();
        let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
        let mut endpoints = cluster.ready_endpoints(ns, name, &port_name, &protocol);
        endpoints.sort();
        endpoints.dedup();
        out.push(ServicePort {
            namespace: ns.to_string(),
            service: name.to_string(),
            port_name,
            protocol,
            cluster_ip,
            port: p.port as u16,
            node_port: p.node_port.map(|n| n as u16),
            affinity_seconds,
            endpoints,
        });
    }
    out
}

/// kube-proxy's `%0.10f` rendering of 1/(n-i).
pub fn probability(remaining: usize) -> String {
    format!("{:.10}", 1.0 / remaining as f64)
}

fn comment(enabled: bool, text: &str) -> String {
    if enabled {
        format!("-m comment --comment \"{text}\" ")
    } else {
        String::new()
    }
}

/// Appends kube-proxy's filter and nat chains for `ports` to `rs`.
pub fn program_iptables(rs: &mut Ruleset, ports: &[ServicePort], cluster_cidr: Option<Ipv4Net>) {
    let total_endpoints: usize = ports.iter().map(|p| p.endpoints.len()).sum();
    let cm = total_endpoints <= LARGE_CLUSTER_ENDPOINTS;

    let filter = rs.table_mut("filter");
    for c in [
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ] {
        filter.chain_mut(c);
    }
    let fw = "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL";
    filter.append("INPUT", fw);
    filter.append(
        "INPUT",
        "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
    );
    filter.append("INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES");
    filter.append("FORWARD", fw);
    filter.append(
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    );
    filter.append("FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    filter.append("FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES");
    filter.append("OUTPUT", fw);
    filter.append("OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    filter.append("KUBE-FORWARD", "-m conntrack --ctstate INVALID -m comment --comment \"kubernetes forwarding rules\" -j DROP");
    filter.append("KUBE-FORWARD", format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"));
    filter.append("KUBE-FORWARD", "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    for sp in ports.iter().filter(|p| p.endpoints.is_empty()) {
        let name = sp.name();
        let proto = &sp.protocol;
        filter.append(
            "KUBE-SERVICES",
            format!(
                "-d {}/32 -p {proto} {}-m {proto} --dport {} -j REJECT --reject-with icmp-port-unreachable",
                sp.cluster_ip,
                comment(cm, &format!("{name} has no endpoints")),
                sp.port
            ),
        );
        if let Some(np) = sp.node_port {
            filter.append(
                "KUBE-EXTERNAL-SERVICES",
                format!(
                    "-p {proto} {}-m addrtype --dst-type LOCAL -m {proto} --dport {np} -j REJECT --reject-with icmp-port-unreachable",
                    comment(cm, &format!("{name} has no endpoints"))
                ),
            );
        }
    }

    let nat = rs.table_mut("nat");
    for c in [
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-SERVICES",
    ] {
        nat.chain_mut(c);
    }
    nat.append(
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.append(
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    );
    nat.append(
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    );
    nat.append("KUBE-MARK-MASQ", format!("-j MARK --or-mark {MASQ_MARK}"));
    nat.append(
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
    );
    nat.append(
        "KUBE-POSTROUTING",
        format!("-j MARK --xor-mark {MASQ_MARK}"),
    );
    nat.append(
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    );

    for sp in ports.iter().filter(|p| !p.endpoints.is_empty()) {
        let name = sp.name();
        let proto = &sp.protocol;
        let svc = sp.svc_chain();
        let vip = format!(
            "-d {}/32 -p {proto} {}-m {proto} --dport {}",
            sp.cluster_ip,
            comment(cm, &format!("{name} cluster IP")),
            sp.port
        );
        nat.append("KUBE-SERVICES", format!("{vip} -j {svc}"));
        nat.chain_mut(&svc);
        if let Some(cidr) = cluster_cidr {
            nat.append(&svc, format!("! -s {cidr} {vip} -j KUBE-MARK-MASQ"));
        }
        if let Some(np) = sp.node_port {
            let ext = sp.ext_chain();
            nat.append(
                "KUBE-NODEPORTS",
                format!(
                    "-p {proto} {}-m {proto} --dport {np} -j {ext}",
                    comment(cm, &name)
                ),
            );
            nat.append(
                &ext,
                format!(
                    "{}-j KUBE-MARK-MASQ",
                    comment(
                        cm,
                        &format!("masquerade traffic for {name} external destinations")
                    )
                ),
            );
            nat.append(&ext, format!("-j {svc}"));
        }
        let seps: Vec<String> = sp.endpoints.iter().map(|e| sp.sep_chain(e)).collect();
        if let Some(secs) = sp.affinity_seconds {
            for (ep, sep) in sp.endpoints.iter().zip(&seps) {
                nat.append(
                    &svc,
                    format!(
                        "{}-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {secs} --reap -j {sep}",
                        comment(cm, &format!("{name} -> {ep}"))
                    ),
                );
            }
        }
        let n = sp.endpoints.len();
        for (i, (ep, sep)) in sp.endpoints.iter().zip(&seps).enumerate() {
            let stat = if i + 1 < n {
                format!(
                    "-m statistic --mode random --probability {} ",
                    probability(n - i)
                )
            } else {
                String::new()
            };
            nat.append(
                &svc,
                format!("{}{stat}-j {sep}", comment(cm, &format!("{name} -> {ep}"))),
            );
        }
        for (ep, sep) in sp.endpoints.iter().zip(&seps) {
            let ip = ep.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(ep);
            nat.append(
                sep,
                format!("-s {ip}/32 {}-j KUBE-MARK-MASQ", comment(cm, &name)),
            );
            let recent = if sp.affinity_seconds.is_some() {
                format!("-m recent --name {sep} --mask 255.255.255.255 --rsource --set ")
            } else {
                String::new()
            };
            nat.append(
                sep,
                format!(
                    "-p {proto} {}{recent}-m {proto} -j DNAT --to-destination {ep}",
                    comment(cm, &name)
                ),
            );
        }
    }
    nat.append(
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "test-svc-ns".into(),
            service: "linux0224-nginx".into(),
            port_name: String::new(),
            protocol: "tcp".into(),
            cluster_ip: "10.1.59.153".parse().unwrap(),
            port: 80,
            node_port: None,
            affinity_seconds: None,
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Names that share a prefix ("svc", "svc-2", "svca") and named ports
    /// beside unnamed ones: each Service's ports found by bisection are
    /// those a walk over every port finds.
    #[test]
    fn a_services_ports_are_found_by_bisection_among_prefixed_names() {
        let mut ports = Vec::new();
        for (service, names) in [
            ("svc", &["", ""][..]),
            ("svc-2", &["a", "b"][..]),
            ("svc", &["x", "y"][..]),
            ("svca", &[""][..]),
            ("sv", &["a"][..]),
            ("svc.1", &[""][..]),
        ] {
            for (i, n) in names.iter().enumerate() {
                let mut sp = port(&[]);
                sp.namespace = "ns".into();
                sp.service = service.into();
                sp.port_name = n.to_string();
                sp.protocol = ["tcp", "udp"][i % 2].into();
                ports.push(sp);
            }
        }
        sort_ports(&mut ports);
        for service in ["svc", "svc-2", "svca", "sv", "svc.1", "absent", "s"] {
            let found: Vec<usize> = ports_of_service(&ports, "ns", service)
                .into_iter()
                .flatten()
                .collect();
            let walked: Vec<usize> = (0..ports.len())
                .filter(|&i| ports[i].service == service)
                .collect();
            assert_eq!(found, walked, "{service}");
        }
    }

    #[test]
    fn probabilities_follow_one_over_remaining() {
        let mut rs = Ruleset::default();
        let sp = port(&["10.2.0.42:80", "10.2.1.117:80", "10.2.2.132:80"]);
        program_iptables(&mut rs, std::slice::from_ref(&sp), None);
        let rules = &rs
            .table("nat")
            .unwrap()
            .chain(&sp.svc_chain())
            .unwrap()
            .rules;
        assert_eq!(rules.len(), 3);
        assert!(
            rules[0].contains("--probability 0.3333333333 "),
            "{}",
            rules[0]
        );
        assert!(
            rules[1].contains("--probability 0.5000000000 "),
            "{}",
            rules[1]
        );
        assert!(
            !rules[2].contains("statistic"),
            "last endpoint is unconditional"
        );
        assert!(rules[2].ends_with(&sp.sep_chain("10.2.2.132:80")));
    }

    #[test]
    fn service_without_endpoints_is_rejected_in_filter() {
        let mut rs = Ruleset::default();
        program_iptables(&mut rs, &[port(&[])], None);
        let filter_svcs = &rs
            .table("filter")
            .unwrap()
            .chain("KUBE-SERVICES")
            .unwrap()
            .rules;
        assert_eq!(filter_svcs.len(), 1);
        assert!(filter_svcs[0].contains("has no endpoints") && filter_svcs[0].contains("REJECT"));
        let nat_svcs = &rs
            .table("nat")
            .unwrap()
            .chain("KUBE-SERVICES")
            .unwrap()
            .rules;
        assert_eq!(nat_svcs.len(), 1, "only the nodeports rule: {nat_svcs:?}");
    }

    #[test]
    fn comments_dropped_above_threshold() {
        let eps: Vec<String> = (0..=LARGE_CLUSTER_ENDPOINTS)
            .map(|i| format!("10.2.{}.{}:80", i / 250, i % 250 + 2))
            .collect();
        let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
        let mut rs = Ruleset::default();
        program_iptables(&mut rs, &[port(&refs)], None);
        let sep_rules = rs
            .table("nat")
            .unwrap()
            .chain(&port(&refs).sep_chain(&eps[0]))
            .unwrap();
        assert!(sep_rules.rules.iter().all(|r| !r.contains("--comment")));
    }
}
