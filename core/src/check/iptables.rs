//! The node's iptables against what kube-proxy (iptables mode) and flannel
//! would have written. Chains are matched to Services by kube-proxy's hash,
//! never by comment (large clusters have none).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::finding::{Finding, FindingId, Mark, ObjectRef, RepairAction, Severity, Subject};
use crate::dataplane::NodeState;
use crate::dataplane::iptables::{RuleSpec, Ruleset};
use crate::model::index::HashSet;
use crate::model::kube_proxy::{ProxyMode, ServicePort};
use crate::model::reading::{CheckGroup, Skipped};

use crate::model::{ClusterNetwork, hash, kube_proxy};

fn has_kube_chains(rs: &Ruleset) -> bool {
    rs.table("nat")
        .is_some_and(|t| t.chain("KUBE-SERVICES").is_some())
}

fn has_flannel_chains(rs: &Ruleset) -> bool {
    rs.tables
        .iter()
        .any(|t| t.chains().iter().any(|c| c.name.starts_with("FLANNEL-")))
}

/// The backend kube-proxy's rules live in (the one with KUBE-SERVICES).
pub fn kube_proxy_ruleset(state: &NodeState) -> Option<&Ruleset> {
    state
        .iptables
        .iter()
        .map(|b| &b.ruleset)
        .find(|rs| has_kube_chains(rs))
}

/// A Service port's identity across readings: its hashed name, protocol,
/// ClusterIP and port.
pub type PortKey = (String, String, std::net::Ipv4Addr, u16);

fn port_key(sp: &ServicePort) -> PortKey {
    (sp.name(), sp.protocol.clone(), sp.cluster_ip, sp.port)
}

/// A node's iptables findings, kube-proxy's chains kept apart per Service
/// port: a change of one Service's endpoints re-judges its chains alone,
/// not the 113,000 rules of 10,000 Services (`check::incremental`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRules {
    /// The findings about each Service port's chains (ports without
    /// findings are absent), each shared: the ports a change did not touch
    /// keep theirs, and so does the dashboard's list, without a copy.
    pub ports: BTreeMap<PortKey, Vec<Arc<Finding>>>,
    /// The rest: backends split, kube-proxy not programmed, stale
    /// rejects, flannel's chains.
    pub rest: Vec<Finding>,
    /// Whether kube-proxy's chains were judged port by port (iptables
    /// mode, KUBE-SERVICES present, its objects read), so that they may
    /// be brought up to date port by port.
    pub by_port: bool,
    /// KUBE-SERVICES and KUBE-NODEPORTS as the judgement of every port
    /// parsed them, kept for the judgements after it from the same rules:
    /// an endpoint change re-judges a few ports without a pass over 10,000
    /// rules per node (half of a lab node's reading after a watch event).
    jumps: Option<Arc<ServiceJumps>>,
}

impl NodeRules {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.rest
            .iter()
            .chain(self.ports.values().flatten().map(|f| &**f))
    }

    /// The same findings, each shared (the rest's copied once).
    pub fn shared(&self) -> impl Iterator<Item = Arc<Finding>> + '_ {
        let rest = self.rest.iter().map(|f| Arc::new(f.clone()));
        rest.chain(self.ports.values().flatten().cloned())
    }
}

/// The keys of the ports of these Services (namespace, name): the ports
/// whose chains a change of them may have changed.
pub fn ports_of_services<'a>(
    ports: &'a [ServicePort],
    services: &'a BTreeSet<(String, String)>,
) -> impl Iterator<Item = PortKey> + 'a {
    services
        .iter()
        .flat_map(|(ns, name)| kube_proxy::ports_of_service(ports, ns, name))
        .flat_map(|run| &ports[run])
        .map(port_key)
}

/// All iptables findings for `node`; `ports` are the cluster's
/// ([`kube_proxy::service_ports`]). With `before` — the node's findings
/// from the same rules and mode, and the ports changed since — only those
/// ports' chains are judged again.
#[allow(clippy::too_many_arguments)]
pub fn check_node(
    ports: &[ServicePort],
    node: &str,
    state: &NodeState,
    net: &ClusterNetwork,
    mode: ProxyMode,
    // An owner whose API objects could not be read is not judged (its
    // chains would look stale against nothing).
    skipped: &Skipped,
    before: Option<(NodeRules, &BTreeSet<PortKey>)>,
) -> NodeRules {
    let mut judged = NodeRules::default();
    let out = &mut judged.rest;
    let n = Some(node);
    let kube: Vec<&str> = state
        .iptables
        .iter()
        .filter(|b| has_kube_chains(&b.ruleset))
        .map(|b| b.backend.as_str())
        .collect();
    let flannel: Vec<&str> = state
        .iptables
        .iter()
        .filter(|b| has_flannel_chains(&b.ruleset))
        .map(|b| b.backend.as_str())
        .collect();
    let all: BTreeSet<&str> = kube.iter().chain(&flannel).copied().collect();
    if all.len() > 1 {
        out.push(
            Finding::new(FindingId::IptablesBackendSplit, Severity::Error, n, "kube-proxy's and flannel's rules are split between iptables-legacy and iptables-nft: packets see both, stale rules in one win")
                .object(Subject::IptablesBackends("nft+legacy".into()))
                .evidence("one backend", format!("kube-proxy in [{}], flannel in [{}]", kube.join(","), flannel.join(",")))
                .repair(RepairAction::Manual { what: "run kube-proxy and flanneld with the same iptables mode as the host, then flush the other backend's KUBE-*/FLANNEL-* chains".into() }),
        );
    }
    let main = state
        .iptables
        .iter()
        .find(|b| has_kube_chains(&b.ruleset) || has_flannel_chains(&b.ruleset))
        .or(state.iptables.first());
    let Some(rs) = main.map(|b| &b.ruleset) else {
        return judged;
    };
    if mode == ProxyMode::Iptables && skipped.runs(CheckGroup::KubeProxy) {
        check_kube_proxy(ports, node, rs, before, &mut judged);
    }
    if skipped.runs(CheckGroup::Overlay) {
        check_flannel_rules(node, rs, net, &mut judged.rest);
    }
    judged
}

/// What kube-proxy's check reads of the rules besides each port's own
/// chains: KUBE-SERVICES by (ClusterIP, port, protocol) — 10,000 Services
/// would otherwise each scan 10,000 rules — and KUBE-NODEPORTS.
#[derive(Debug, PartialEq)]
struct ServiceJumps {
    services: HashMap<(String, u16, String), RuleSpec>,
    /// By the port they match (a port's rule is looked up, not searched
    /// for among every NodePort's).
    nodeports: HashMap<u16, Vec<RuleSpec>>,
}

impl ServiceJumps {
    /// Parsed from every rule, or (`only`) from the rules that name one of
    /// these ports' ClusterIPs or NodePorts (a few of 10,000).
    fn of(rs: &Ruleset, only: Option<&[&ServicePort]>) -> ServiceJumps {
        let ips: Option<HashSet<String>> =
            only.map(|ports| ports.iter().map(|p| p.cluster_ip.to_string()).collect());
        let node_ports: Option<HashSet<String>> = only.map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.node_port.map(|n| n.to_string()))
                .collect()
        });
        let wanted = |rule: &str, words: &Option<HashSet<String>>| {
            words
                .as_ref()
                .is_none_or(|w| numbers(rule).any(|n| w.contains(n)))
        };
        let specs = |chain: &str, words: &Option<HashSet<String>>| {
            rs.table("nat")
                .and_then(|t| t.chain(chain))
                .into_iter()
                .flat_map(|c| &c.rules)
                .filter(|r| wanted(r, words))
                .filter_map(|r| RuleSpec::parse(r).ok())
                .collect::<Vec<_>>()
        };
        let mut services: HashMap<(String, u16, String), RuleSpec> = HashMap::new();
        for r in specs("KUBE-SERVICES", &ips) {
            if let (Some(ip), Some(port), Some(proto), Some(true)) = (
                r.dst_host().map(str::to_string),
                r.dport,
                r.proto.clone(),
                r.target.as_deref().map(kube_proxy::leads_to_service),
            ) {
                services.entry((ip, port, proto)).or_insert(r);
            }
        }
        let mut nodeports: HashMap<u16, Vec<RuleSpec>> = HashMap::new();
        for r in specs("KUBE-NODEPORTS", &node_ports) {
            if let Some(port) = r.dport {
                nodeports.entry(port).or_default().push(r);
            }
        }
        ServiceJumps {
            services,
            nodeports,
        }
    }
}

/// The numbers `rule` holds whole (addresses, ports: each run of digits
/// and dots), to find the rules naming a few ports' ClusterIPs or
/// NodePorts among 10,000 in one pass over each. Searched for one by one,
/// 20 changed ports a reading cost 200,000 searches per read node (a
/// quarter of a second of the lab's readings), and a plain substring
/// search took 10.96.1.1 for part of a hundred other ClusterIPs.
fn numbers(rule: &str) -> impl Iterator<Item = &str> {
    rule.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|n| !n.is_empty())
}

fn check_kube_proxy(
    ports: &[ServicePort],
    node: &str,
    rs: &Ruleset,
    before: Option<(NodeRules, &BTreeSet<PortKey>)>,
    judged: &mut NodeRules,
) {
    let n = Some(node);
    if !has_kube_chains(rs) {
        if ports.iter().any(|p| !p.endpoints.is_empty()) {
            judged.rest.push(
                Finding::new(FindingId::KubeProxyNotProgrammed, Severity::Error, n, "no KUBE-SERVICES chain: kube-proxy (iptables mode) has not programmed this node; it is probably not running")
                    .object(Subject::chain("nat", "KUBE-SERVICES"))
                    .repair(RepairAction::Manual { what: "check the kube-proxy pod on this node (kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide)".into() }),
            );
        }
        return;
    }
    check_stale_rejects(ports, rs, node, &mut judged.rest);
    judged.by_port = true;
    let served = ports.iter().filter(|p| !p.endpoints.is_empty());
    let (jumps, to_judge): (Arc<ServiceJumps>, Vec<&ServicePort>) = match before {
        Some((b, changed)) if b.by_port => {
            // The other ports' findings are taken over, not copied: a map
            // of every port with findings (thousands on a lab node) built
            // again took a tenth of an endpoint reading.
            judged.ports = b.ports;
            for k in changed {
                judged.ports.remove(k);
            }
            let again = changed_ports(ports, changed);
            // The same rules as before: their jumps are the ones parsed
            // then, else those naming the changed ports are parsed.
            match b.jumps {
                Some(kept) => {
                    judged.jumps = Some(kept.clone());
                    (kept, again)
                }
                None => (Arc::new(ServiceJumps::of(rs, Some(&again))), again),
            }
        }
        _ => {
            let all = Arc::new(ServiceJumps::of(rs, None));
            judged.jumps = Some(all.clone());
            (all, served.collect())
        }
    };
    for sp in to_judge {
        let mut out = Vec::new();
        check_port(sp, &jumps, rs, node, &mut out);
        if !out.is_empty() {
            let found = out.into_iter().map(Arc::new);
            judged.ports.entry(port_key(sp)).or_default().extend(found);
        }
    }
}

/// The ports of `ports` (sorted by name and protocol, as
/// [`kube_proxy::service_ports`] sorts them) with endpoints and a key in
/// `changed`, in their order: found by bisection per name and protocol
/// (the keys sort by them too). A filter over every port hashed each of
/// 10,000 ports' address on every read node for every endpoint change.
fn changed_ports<'a>(
    ports: &'a [ServicePort],
    changed: &BTreeSet<PortKey>,
) -> Vec<&'a ServicePort> {
    let mut named: Vec<(&str, &str)> = changed
        .iter()
        .map(|k| (k.0.as_str(), k.1.as_str()))
        .collect();
    named.dedup();
    let mut out = Vec::new();
    for (name, protocol) in named {
        let key = |sp: &ServicePort| {
            (sp.name().as_str().cmp(name)).then_with(|| sp.protocol.as_str().cmp(protocol))
        };
        let start = ports.partition_point(|sp| key(sp).is_lt());
        let end = start + ports[start..].partition_point(|sp| key(sp).is_eq());
        out.extend(
            ports[start..end]
                .iter()
                .filter(|p| !p.endpoints.is_empty() && changed.contains(&port_key(p))),
        );
    }
    out
}

/// One Service port's chains: its KUBE-SERVICES jump and chain, its
/// endpoint chains, its NodePort rule.
fn check_port(
    sp: &ServicePort,
    jumps: &ServiceJumps,
    rs: &Ruleset,
    node: &str,
    out: &mut Vec<Finding>,
) {
    let n = Some(node);
    let nat = rs.table("nat");
    let svc_ref = ObjectRef::namespaced("Service", &sp.namespace, &sp.service);
    let jump = jumps
        .services
        .get(&(sp.cluster_ip.to_string(), sp.port, sp.protocol.clone()));
    // The name this node's kube-proxy hashed the port under.
    let hashed = sp
        .hashed_names()
        .into_iter()
        .find(|n| jump.is_some_and(|j| j.jumps_to(&hash::svc_chain(n, &sp.protocol))))
        .unwrap_or_else(|| sp.name());
    let svc_chain = hash::svc_chain(&hashed, &sp.protocol);
    let chain_exists = nat.and_then(|t| t.chain(&svc_chain)).is_some();
    if jump.is_none() || !chain_exists || !jump.is_some_and(|j| j.jumps_to(&svc_chain)) {
        out.push(
            Finding::new(FindingId::KubeProxySvcChainMissing, Severity::Error, n, format!("{} {}:{}/{} has no kube-proxy service chain here: its ClusterIP is not translated", sp.name(), sp.cluster_ip, sp.port, sp.protocol))
                .object(svc_ref.clone())
                .object(Subject::chain("nat", svc_chain.clone()))
                .evidence(
                    format!("KUBE-SERVICES -d {}/32 --dport {} -j {svc_chain}", sp.cluster_ip, sp.port),
                    match (jump, chain_exists) {
                        (None, false) => "no rule, no chain".to_string(),
                        (None, true) => "chain without a KUBE-SERVICES rule".to_string(),
                        (Some(j), _) => format!("rule jumps to {}, chain {}", j.target.clone().unwrap_or_default(), if chain_exists { "present" } else { "absent" }),
                    },
                )
                .repair(kube_proxy_action(vec!["KUBE-SERVICES".into(), svc_chain.clone()])),
        );
        return;
    }
    check_endpoints(sp, &hashed, rs, node, &svc_ref, out);
    if let Some(np) = sp.node_port {
        let ext = hash::ext_chain(&hashed, &sp.protocol);
        let ok = jumps.nodeports.get(&np).is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r.jumps_to(&ext) || r.jumps_to(&svc_chain))
        });
        if !ok {
            out.push(
                Finding::new(FindingId::KubeProxyNodeportMissing, Severity::Error, n, format!("no KUBE-NODEPORTS rule for {} on port {np}: NodePort traffic to this node is not forwarded", sp.name()))
                    .object(svc_ref.clone())
                    .object(Subject::chain("nat", "KUBE-NODEPORTS"))
                    .evidence(format!("-p {} --dport {np} -j {ext}", sp.protocol), "absent")
                    .repair(kube_proxy_action(vec!["KUBE-NODEPORTS".into(), ext])),
            );
        }
    }
}

/// kube-proxy rejects traffic to a Service port without endpoints (filter
/// KUBE-SERVICES for its ClusterIP, KUBE-EXTERNAL-SERVICES for its
/// NodePort, "has no endpoints"). Such a rule for a port that has ready
/// endpoints is kube-proxy state that did not follow the Endpoints: it
/// missed an update or stopped syncing.
fn check_stale_rejects(ports: &[ServicePort], rs: &Ruleset, node: &str, out: &mut Vec<Finding>) {
    for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"] {
        for r in rs.specs("filter", chain) {
            let stale = r.jumps_to("REJECT")
                && r.comment
                    .as_deref()
                    .is_some_and(|c| c.ends_with("has no endpoints"));
            if !stale {
                continue;
            }
            let served = ports.iter().find(|sp| {
                !sp.endpoints.is_empty()
                    && r.proto.as_deref() == Some(sp.protocol.as_str())
                    && match chain {
                        "KUBE-SERVICES" => {
                            r.dport == Some(sp.port)
                                && r.dst_host() == Some(sp.cluster_ip.to_string().as_str())
                        }
                        _ => sp.node_port.is_some() && r.dport == sp.node_port,
                    }
            });
            if let Some(sp) = served {
                out.push(
                    Finding::new(FindingId::KubeProxyRejectStale, Severity::Warning, Some(node), format!("filter {chain} rejects {} as having no endpoints, but it has {}: kube-proxy's rules here did not follow its Endpoints", sp.name(), sp.endpoints.len()))
                        .object(ObjectRef::namespaced("Service", &sp.namespace, &sp.service))
                        .object(Subject::chain("filter", chain))
                        .evidence("no REJECT for a Service with ready endpoints", r.comment.clone().unwrap_or_default())
                        .repair(RepairAction::Manual { what: "restart kube-proxy on this node (its next full sync rewrites the rule); see its log for why it stopped syncing".into() }),
                );
            }
        }
    }
}

fn check_endpoints(
    sp: &ServicePort,
    hashed: &str,
    rs: &Ruleset,
    node: &str,
    svc_ref: &ObjectRef,
    out: &mut Vec<Finding>,
) {
    let svc_chain = hash::svc_chain(hashed, &sp.protocol);
    let sep = |e: &str| hash::sep_chain(hashed, &sp.protocol, e);
    let want: BTreeSet<String> = sp.endpoints.iter().map(|e| sep(e)).collect();
    let have: BTreeSet<String> = rs
        .specs("nat", &svc_chain)
        .iter()
        .filter_map(|r| r.target.clone())
        .filter(|t| t.starts_with("KUBE-SEP-"))
        .collect();
    if want == have {
        return;
    }
    let dnat_of = |sep: &str| {
        rs.specs("nat", sep)
            .iter()
            .find_map(|r| r.to_destination.clone())
            .unwrap_or_else(|| "?".into())
    };
    let missing: Vec<String> = sp
        .endpoints
        .iter()
        .filter(|e| !have.contains(&sep(e)))
        .cloned()
        .collect();
    let stale: Vec<String> = have
        .difference(&want)
        .map(|s| format!("{s} -> {}", dnat_of(s)))
        .collect();
    let mut f = Finding::new(
        FindingId::KubeProxyEndpointsMismatch,
        Severity::Error,
        Some(node),
        format!(
            "{}'s endpoint chains do not match its ready endpoints: {} missing, {} stale",
            sp.name(),
            missing.len(),
            stale.len()
        ),
    )
    .object(svc_ref.clone())
    .object(Subject::chain("nat", svc_chain.clone()))
    .evidence(
        format!("endpoints {}", sp.endpoints.join(" ")),
        format!(
            "{}{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!("missing {} ", missing.join(" "))
            },
            if stale.is_empty() {
                String::new()
            } else {
                format!("stale {}", stale.join(" "))
            }
        )
        .trim()
        .to_string(),
    )
    // The stale endpoint chains are named too, so that a repair removes
    // them as kube-proxy's next sync would.
    .repair(kube_proxy_action(
        std::iter::once(svc_chain.clone())
            .chain(want.iter().cloned())
            .chain(have.difference(&want).cloned())
            .collect(),
    ));
    // Each endpoint chain that differs, marked as it stands: the views
    // show a stale KUBE-SEP line as stale and list a missing one.
    for e in &sp.endpoints {
        if !have.contains(&sep(e)) {
            f = f.part(Subject::chain("nat", sep(e)), Mark::Missing);
        }
    }
    for s in have.difference(&want) {
        f = f.part(Subject::chain("nat", s.clone()), Mark::Stale);
    }
    out.push(f);
}

fn kube_proxy_action(chains: Vec<String>) -> RepairAction {
    RepairAction::IptablesChains {
        table: "nat".into(),
        chains,
        owner: "kube-proxy".into(),
    }
}

fn check_flannel_rules(node: &str, rs: &Ruleset, net: &ClusterNetwork, out: &mut Vec<Finding>) {
    let n = Some(node);
    let cidr = net.cluster_cidr.to_string();
    let filter = rs.table("filter");
    let forward_policy = filter
        .and_then(|t| t.chain("FORWARD"))
        .and_then(|c| c.policy.clone());
    let fwd_jump = rs
        .specs("filter", "FORWARD")
        .iter()
        .any(|r| r.jumps_to("FLANNEL-FWD"));
    let fwd = rs.specs("filter", "FLANNEL-FWD");
    let accepts = |src: bool| {
        fwd.iter().any(|r| {
            let m = if src { &r.src } else { &r.dst };
            r.jumps_to("ACCEPT") && m.as_ref().is_some_and(|m| !m.negated && m.value == cidr)
        })
    };
    if forward_policy.as_deref() == Some("DROP") && !(fwd_jump && accepts(true) && accepts(false)) {
        out.push(
            Finding::new(FindingId::ForwardDrop, Severity::Error, n, "FORWARD drops by default and flannel's accept rules are missing: forwarded pod traffic is dropped")
                .object(Subject::chain("filter", "FORWARD"))
                .object(Subject::chain("filter", "FLANNEL-FWD"))
                .evidence(format!("FORWARD -j FLANNEL-FWD; FLANNEL-FWD -s/-d {cidr} -j ACCEPT"), format!("policy DROP, FLANNEL-FWD {}", if fwd_jump { "incomplete" } else { "not jumped to" }))
                .repair(if net.nftables {
                    // flannel's nftables accept cannot outvote iptables' DROP.
                    RepairAction::Manual { what: "flannel in nftables mode accepts pod traffic only in its own table, which does not override this iptables FORWARD policy: set it to ACCEPT (iptables -P FORWARD ACCEPT) or accept the cluster network in iptables' FORWARD".into() }
                } else {
                    RepairAction::IptablesChains { table: "filter".into(), chains: vec!["FLANNEL-FWD".into()], owner: "flannel".into() }
                }),
        );
    }
    // In nftables mode flannel masquerades from its own table
    // (check::nftables); a FORWARD policy that drops is iptables' either way.
    if net.nftables {
        return;
    }
    let masq_jump = rs
        .specs("nat", "POSTROUTING")
        .iter()
        .any(|r| r.jumps_to("FLANNEL-POSTRTG"));
    let masq = rs.specs("nat", "FLANNEL-POSTRTG").iter().any(|r| {
        r.jumps_to("MASQUERADE")
            && r.src
                .as_ref()
                .is_some_and(|s| !s.negated && s.value == cidr)
    });
    if !(masq_jump && masq) {
        out.push(
            Finding::new(FindingId::FlannelMasqMissing, Severity::Error, n, "flannel's masquerade rules are missing: pod traffic leaving the cluster network keeps its pod IP and gets no reply")
                .object(Subject::chain("nat", "FLANNEL-POSTRTG"))
                .evidence(format!("POSTROUTING -j FLANNEL-POSTRTG; -s {cidr} ! -d 224.0.0.0/4 -j MASQUERADE"), if masq_jump { "chain incomplete" } else { "no jump from POSTROUTING" })
                .repair(RepairAction::IptablesChains { table: "nat".into(), chains: vec!["FLANNEL-POSTRTG".into()], owner: "flannel".into() }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_ports_are_the_filter_s_found_by_bisection() {
        let cluster = crate::synthetic::cluster(crate::synthetic::Size {
            nodes: 3,
            pods: 60,
            services: 40,
            endpoints_per_service: 3,
        });
        let mut ports = kube_proxy::service_ports(&cluster);
        ports[17].endpoints.clear();
        let mut changed: BTreeSet<PortKey> = [3, 17, 25, 26].map(|i| port_key(&ports[i])).into();
        // A port gone since (a Service deleted) names nothing now.
        changed.insert(("zz/gone".into(), "TCP".into(), [10, 96, 0, 1].into(), 80));
        let want: Vec<&ServicePort> = (ports.iter())
            .filter(|p| !p.endpoints.is_empty() && changed.contains(&port_key(p)))
            .collect();
        let got = changed_ports(&ports, &changed);
        assert_eq!(got.len(), 3, "3, 25 and 26; 17 has no endpoints");
        assert!(got.iter().zip(&want).all(|(g, w)| std::ptr::eq(*g, *w)));
        assert_eq!(got.len(), want.len());
        assert!(changed_ports(&ports, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_rules_numbers_are_found_whole_not_inside_a_longer_one() {
        let rule = "-A KUBE-SERVICES -d 10.96.1.10/32 -p tcp -m tcp --dport 30007 -j KUBE-SVC-X";
        let found: Vec<&str> = numbers(rule).collect();
        assert_eq!(found, ["10.96.1.10", "32", "30007"]);
        assert!(!found.contains(&"10.96.1.1"));
        assert!(!found.contains(&"3000"));
    }
}
