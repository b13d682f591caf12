//! The repair plan (pure): from a node's findings and what it holds now, the
//! typed actions that put it back the way flannel and kube-proxy meant it,
//! in the order flannel itself programs a node — devices, addresses and
//! sysctls first, then per peer the neighbour, the FDB entry and the route —
//! each with the finding that asks for it and what it replaces.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::check::text::action_line;
use crate::check::{Finding, RepairAction};
use crate::dataplane::{Mac, NodeState, RouteDst};
use crate::model::expect::NodeExpectation;

use super::iptables::{ChainsRestore, Restorer};
use super::nftables::TableRestore;

/// What an action touches; `--only` selects by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Links,
    Sysctl,
    Neigh,
    Fdb,
    Routes,
    Iptables,
}

impl Category {
    /// Every category, in the order a plan applies them.
    pub const ALL: [Category; 6] = [
        Category::Links,
        Category::Sysctl,
        Category::Neigh,
        Category::Fdb,
        Category::Routes,
        Category::Iptables,
    ];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Category::Links => "links",
            Category::Sysctl => "sysctl",
            Category::Neigh => "neigh",
            Category::Fdb => "fdb",
            Category::Routes => "routes",
            Category::Iptables => "iptables",
        }
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("{s:?} is not a category"))
    }
}

/// Who owns the state an action restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// flannel's devices, entries and chains, and the node sysctls.
    Flannel,
    /// kube-proxy rewrites its chains on every sync.
    KubeProxy,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub action: RepairAction,
    pub category: Category,
    pub owner: Owner,
    /// The finding that asks for it, and its summary.
    pub finding: crate::check::FindingId,
    pub why: String,
    /// What the node holds there now (`nothing` when it holds nothing).
    pub replaces: String,
    /// For an iptables action: the restore input that carries it out and
    /// the one that undoes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iptables: Option<ChainsRestore>,
    /// For an nftables table action: the `nft -j -f` inputs that write it
    /// and put it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables: Option<TableRestore>,
}

/// The plan for one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub node: String,
    pub steps: Vec<Step>,
    /// kube-proxy's chains, left out without `--include kube-proxy`.
    pub left_to_kube_proxy: Vec<Step>,
    /// Findings no kernel change fixes: what a person must change.
    pub manual: Vec<Step>,
}

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these categories (empty: all).
    pub only: Vec<Category>,
    /// Also restore kube-proxy's chains.
    pub include_kube_proxy: bool,
}

fn category(a: &RepairAction) -> Option<Category> {
    Some(match a {
        RepairAction::LinkUp { .. }
        | RepairAction::LinkMtu { .. }
        | RepairAction::AddrReplace { .. }
        | RepairAction::Ethtool { .. } => Category::Links,
        RepairAction::Sysctl { .. } => Category::Sysctl,
        RepairAction::NeighReplace { .. } => Category::Neigh,
        RepairAction::FdbReplace { .. } | RepairAction::FdbDelete { .. } => Category::Fdb,
        RepairAction::RouteReplace { .. }
        | RepairAction::RouteDelete { .. }
        | RepairAction::RuleAdd { .. } => Category::Routes,
        RepairAction::VtepRecreate { .. } => Category::Links,
        RepairAction::IptablesChains { .. }
        | RepairAction::IptablesPolicy { .. }
        | RepairAction::NftablesTable { .. } => Category::Iptables,
        RepairAction::Manual { .. } => return None,
    })
}

fn owner(a: &RepairAction) -> Owner {
    match a {
        RepairAction::IptablesChains { owner, .. } | RepairAction::NftablesTable { owner, .. }
            if owner == "kube-proxy" =>
        {
            Owner::KubeProxy
        }
        _ => Owner::Flannel,
    }
}

/// The peer an overlay action is for (its gateway, the pod CIDR's network
/// address), so that each peer's neigh, FDB and route stay together in
/// flannel's order. An FDB entry names only the peer's VTEP MAC: the peer is
/// the one whose neighbour entry the plan writes with that MAC, else the one
/// the node's neighbour table has with it (a stale MAC of no peer keys on
/// itself).
fn peer_key(a: &RepairAction, peer_of_mac: &HashMap<Mac, IpAddr>) -> PeerKey {
    match a {
        RepairAction::NeighReplace { ip, .. } => PeerKey::Gateway(*ip),
        RepairAction::RouteReplace { gateway, .. } => PeerKey::Gateway(*gateway),
        RepairAction::FdbReplace { mac, .. } | RepairAction::FdbDelete { mac, .. } => peer_of_mac
            .get(mac)
            .map_or(PeerKey::Mac(*mac), |ip| PeerKey::Gateway(*ip)),
        _ => PeerKey::None,
    }
}

/// Which peer a per-peer action belongs to: its VTEP gateway, or for an
/// FDB entry of no known peer its own MAC; `None` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PeerKey {
    None,
    Gateway(IpAddr),
    Mac(Mac),
}

/// VTEP MAC -> peer gateway: the neighbours the plan writes first, then
/// those the node holds.
fn peers_by_mac(steps: &[Step], state: &NodeState) -> HashMap<Mac, IpAddr> {
    let mut m: HashMap<Mac, IpAddr> = HashMap::new();
    for n in &state.neighs {
        if let Some(mac) = n.mac() {
            m.entry(mac).or_insert(n.dst);
        }
    }
    for s in steps {
        if let RepairAction::NeighReplace { ip, mac, .. } = &s.action {
            m.insert(*mac, *ip);
        }
    }
    m
}

fn overlay_route(a: &RepairAction) -> bool {
    matches!(a, RepairAction::RouteReplace { .. })
}

/// What a step overwrote, enough to put it back. "Nothing was there" is
/// written as the kind alone: a node that lost its flannel state journals
/// 15,000 of them before its first change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Before {
    /// The neighbour entry (lladdr) there was, if any (flannel's are PERMANENT).
    Neigh {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lladdr: Option<Mac>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        permanent: bool,
    },
    /// The FDB destinations the MAC had.
    Fdb {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dsts: Vec<IpAddr>,
    },
    /// The main-table route there was: gateway, device, onlink.
    Route {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<(Option<IpAddr>, String, bool)>,
    },
    LinkUp {
        up: bool,
    },
    Mtu {
        mtu: u32,
    },
    Sysctl {
        value: Option<String>,
    },
    Addrs {
        addrs: Vec<Ipv4Net>,
    },
    /// The `nft -j -f` input that puts back the table an nftables action
    /// rewrote.
    NftTable {
        restore: String,
    },
    /// The `iptables-restore --noflush` input that puts back the chains an
    /// iptables action rewrote, and the backend it goes to.
    Chains {
        backend: String,
        restore: String,
    },
    /// Whether the ethtool feature was on (`None`: not known).
    Ethtool {
        on: Option<bool>,
    },
    /// The VXLAN device that was there, and the entries on it that went
    /// with it (neigh `ip mac`, FDB `mac dst`, route `dst gw onlink`).
    Vtep {
        spec: Option<crate::dataplane::state::VxlanSpec>,
        neighs: Vec<(IpAddr, Mac)>,
        fdb: Vec<(Mac, IpAddr)>,
        routes: Vec<(RouteDst, Option<IpAddr>, bool)>,
        /// Its tx checksum offload (`None`: not read); a new device
        /// starts with the kernel's default.
        #[serde(default)]
        tx_checksum: Option<bool>,
    },
    /// Whether the policy rule was there (a rule is only ever added).
    Rule {
        present: bool,
    },
}

/// What `a` would overwrite on the node, read from `state`.
pub fn before(a: &RepairAction, state: &NodeState) -> Before {
    match a {
        RepairAction::NeighReplace { dev, ip, .. } => {
            let n = state.neighs.iter().find(|n| n.dev == *dev && n.dst == *ip);
            Before::Neigh {
                lladdr: n.and_then(|n| n.mac()),
                permanent: n.is_some_and(|n| n.state.iter().any(|s| s == "PERMANENT")),
            }
        }
        RepairAction::FdbReplace { dev, mac, .. } | RepairAction::FdbDelete { dev, mac, .. } => {
            Before::Fdb {
                dsts: state
                    .fdb
                    .iter()
                    .filter(|f| f.dev == *dev && f.mac == *mac)
                    .filter_map(|f| f.dst)
                    .collect(),
            }
        }
        RepairAction::RouteReplace { .. } | RepairAction::RouteDelete { .. } => {
            let (dst, table) = match a {
                RepairAction::RouteDelete { dst, table } => (*dst, *table),
                RepairAction::RouteReplace { dst, .. } => (RouteDst::from(*dst), 254),
                _ => unreachable!("matched above"),
            };
            Before::Route {
                route: state
                    .routes
                    .iter()
                    .find(|r| r.table == table && r.dst == dst)
                    .map(|r| {
                        (
                            r.gateway,
                            r.dev.clone().unwrap_or_default(),
                            r.flags.iter().any(|f| f == "onlink"),
                        )
                    }),
            }
        }
        RepairAction::VtepRecreate { spec } => Before::Vtep {
            spec: crate::dataplane::state::VxlanSpec::of(state, &spec.dev),
            neighs: state
                .neighs
                .iter()
                .filter(|n| n.dev == spec.dev)
                .filter_map(|n| Some((n.dst, n.mac()?)))
                .collect(),
            fdb: state
                .fdb
                .iter()
                .filter(|f| f.dev == spec.dev)
                .filter_map(|f| Some((f.mac, f.dst?)))
                .collect(),
            routes: state
                .routes
                .iter()
                .filter(|r| {
                    r.table == 254
                        && r.dev.as_deref() == Some(spec.dev.as_str())
                        && r.protocol != "kernel"
                })
                .map(|r| (r.dst, r.gateway, r.onlink()))
                .collect(),
            tx_checksum: state.vxlan_tx_checksum.get(&spec.dev).copied(),
        },
        RepairAction::LinkUp { dev } => Before::LinkUp {
            up: state.link(dev).is_some_and(|l| l.up),
        },
        RepairAction::LinkMtu { dev, .. } => Before::Mtu {
            mtu: state.link(dev).map(|l| l.mtu).unwrap_or(1500),
        },
        RepairAction::Sysctl { key, .. } => Before::Sysctl {
            value: state.sysctls.get(key),
        },
        RepairAction::AddrReplace { dev, .. } => Before::Addrs {
            addrs: state
                .addrs_of(dev)
                .filter_map(crate::dataplane::state::Addr::v4)
                .collect(),
        },
        RepairAction::RuleAdd { priority, table } => Before::Rule {
            present: state
                .rules
                .iter()
                .any(|r| r.family == "inet" && r.priority == *priority && r.table == *table),
        },
        RepairAction::Ethtool { dev, feature, .. } => Before::Ethtool {
            // The one feature the node state reads.
            on: (feature == "tx-checksum-ip-generic")
                .then(|| state.vxlan_tx_checksum.get(dev).copied())
                .flatten(),
        },
        _ => Before::Addrs { addrs: Vec::new() },
    }
}

/// What the node holds where `a` would write, as a person reads it.
pub fn current(a: &RepairAction, state: &NodeState) -> String {
    let nothing = || "nothing".to_string();
    let listed = |v: Vec<String>| {
        if v.is_empty() {
            nothing()
        } else {
            v.join(", ")
        }
    };
    match (a, before(a, state)) {
        (RepairAction::NeighReplace { ip, .. }, Before::Neigh { lladdr, permanent }) => lladdr
            .map(|l| {
                format!(
                    "{ip} lladdr {l}{}",
                    if permanent { " PERMANENT" } else { "" }
                )
            })
            .unwrap_or_else(nothing),
        (
            RepairAction::FdbReplace { mac, .. } | RepairAction::FdbDelete { mac, .. },
            Before::Fdb { dsts },
        ) => listed(dsts.iter().map(|d| format!("{mac} dst {d}")).collect()),
        (
            RepairAction::RouteReplace { .. } | RepairAction::RouteDelete { .. },
            Before::Route { route },
        ) => route
            .map(|(gw, dev, onlink)| {
                let dst = match a {
                    RepairAction::RouteReplace { dst, .. } => RouteDst::from(*dst),
                    RepairAction::RouteDelete { dst, .. } => *dst,
                    _ => unreachable!("matched above"),
                };
                format!(
                    "{dst}{} dev {dev}{}",
                    gw.map(|g| format!(" via {g}")).unwrap_or_default(),
                    if onlink { " onlink" } else { "" }
                )
            })
            .unwrap_or_else(nothing),
        (
            RepairAction::VtepRecreate { .. },
            Before::Vtep {
                spec: Some(s),
                neighs,
                fdb,
                routes,
                ..
            },
        ) => format!(
            "{} vxlan id {} dstport {} {}, {} neigh, {} FDB, {} route entries",
            s.dev,
            s.vni,
            s.port,
            if s.learning { "learning" } else { "nolearning" },
            neighs.len(),
            fdb.len(),
            routes.len()
        ),
        (RepairAction::LinkUp { dev }, Before::LinkUp { up }) => {
            format!("{dev} {}", if up { "up" } else { "down" })
        }
        (RepairAction::LinkMtu { dev, .. }, Before::Mtu { mtu }) => format!("{dev} mtu {mtu}"),
        (RepairAction::Sysctl { key, .. }, Before::Sysctl { value }) => value
            .map(|v| format!("{key} = {v}"))
            .unwrap_or_else(nothing),
        (RepairAction::AddrReplace { .. }, Before::Addrs { addrs }) => {
            listed(addrs.iter().map(|a| a.to_string()).collect())
        }
        (RepairAction::IptablesChains { table, chains, .. }, _) => {
            format!("table {table}: {} as the node has them", chains.join(", "))
        }
        (RepairAction::IptablesPolicy { chain, .. }, _) => format!("{chain}'s current policy"),
        (RepairAction::RuleAdd { priority, .. }, Before::Rule { present: false }) => {
            format!("no rule at priority {priority}")
        }
        (RepairAction::Ethtool { dev, feature, .. }, Before::Ethtool { on }) => format!(
            "{dev} {feature} {}",
            match on {
                Some(true) => "on",
                Some(false) => "off",
                None => "(not read)",
            }
        ),
        _ => nothing(),
    }
}

/// The plan for `node` from its findings (others' are ignored); `expected`
/// gives what `expect::node` gives the node, which chains and tables are
/// restored from: called only when a finding asks for a table to be
/// restored (kube-proxy's expected rules for 10,000 Services take 85 ms).
pub fn plan<'f>(
    node: &str,
    findings: impl IntoIterator<Item = &'f Finding>,
    state: &NodeState,
    expected: impl FnOnce() -> NodeExpectation,
    opts: &Options,
) -> Plan {
    let expected = std::cell::LazyCell::new(expected);
    // One index of each table's jumps for every chains action of the plan.
    let restorer = std::cell::LazyCell::new(|| Restorer::new(&expected.iptables, state));
    let findings = findings.into_iter();
    let mut plan = Plan {
        node: node.to_string(),
        steps: Vec::with_capacity(findings.size_hint().0),
        left_to_kube_proxy: Vec::new(),
        manual: Vec::new(),
    };
    // Findings may ask for the same change; it is planned once. (A node
    // that lost its flannel state has 15,000 of them: the set is sized for
    // them and hashed with foldhash: growing a SipHash set took half the plan's time.)
    let mut planned: foldhash::HashSet<&RepairAction> =
        foldhash::HashSet::with_capacity_and_hasher(findings.size_hint().0, Default::default());
    for f in findings {
        let ours = f.node.as_deref() == Some(node);
        for a in &f.repair {
            let step = |category| {
                let iptables = match a {
                    RepairAction::IptablesChains { table, chains, .. } => {
                        restorer.restore(table, chains)
                    }
                    _ => None,
                };
                let nftables = match a {
                    RepairAction::NftablesTable { family, table, .. } => expected
                        .nft_table(family, table)
                        .map(|t| super::nftables::restore(t, state)),
                    _ => None,
                };
                let replaces = match (&iptables, &nftables) {
                    (Some(r), _) => r.replaces.clone(),
                    (_, Some(r)) => r.replaces.clone(),
                    _ => current(a, state),
                };
                Step {
                    action: a.clone(),
                    category,
                    owner: owner(a),
                    finding: f.id,
                    why: f.summary.clone(),
                    replaces,
                    iptables,
                    nftables,
                }
            };
            match category(a) {
                // A person's job, whichever node (or none) the finding names.
                None => {
                    if ours || f.node.is_none() {
                        plan.manual.push(step(Category::Links));
                    }
                }
                Some(_) if !ours => {}
                Some(c) if !opts.only.is_empty() && !opts.only.contains(&c) => {}
                Some(c) => {
                    if !planned.insert(a) {
                        continue;
                    }
                    let s = step(c);
                    if s.owner == Owner::KubeProxy && !opts.include_kube_proxy {
                        plan.left_to_kube_proxy.push(s);
                    } else {
                        plan.steps.push(s);
                    }
                }
            }
        }
    }
    // Devices first, then per peer neigh -> FDB -> route (flannel's order),
    // then netfilter; the sort is stable, so findings keep their order.
    let peer_of_mac = peers_by_mac(&plan.steps, state);
    plan.steps.sort_by_cached_key(|s| {
        let overlay = matches!(
            s.category,
            Category::Neigh | Category::Fdb | Category::Routes
        );
        (
            match s.category {
                Category::Links => 0,
                Category::Sysctl => 1,
                // Policy rules before the routes they lead to.
                Category::Routes if !overlay_route(&s.action) => 1,
                Category::Neigh | Category::Fdb | Category::Routes => 2,
                Category::Iptables => 3,
            },
            if overlay {
                peer_key(&s.action, &peer_of_mac)
            } else {
                PeerKey::None
            },
            s.category,
        )
    });
    plan
}

impl Plan {
    /// Nothing to change on the node.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Nothing to change, nothing left to kube-proxy or to a person.
    pub fn is_clean(&self) -> bool {
        self.steps.is_empty() && self.left_to_kube_proxy.is_empty() && self.manual.is_empty()
    }

    /// The plan one step a line with every field in a column (`-o wide`):
    /// what is applied, left to kube-proxy, or a person's job.
    pub fn text_wide(&self) -> String {
        let row = |n: String, what: &str, s: &Step| {
            [
                n,
                what.to_string(),
                s.category.name().to_string(),
                match s.owner {
                    Owner::Flannel => "flannel",
                    Owner::KubeProxy => "kube-proxy",
                }
                .to_string(),
                s.finding.to_string(),
                match &s.action {
                    RepairAction::Manual { what } => what.clone(),
                    other => action_line(other),
                },
                s.replaces.clone(),
            ]
        };
        let rows: Vec<[String; 7]> = (self.steps.iter().enumerate())
            .map(|(i, s)| row((i + 1).to_string(), "apply", s))
            .chain(
                self.left_to_kube_proxy
                    .iter()
                    .map(|s| row("-".into(), "kube-proxy's", s)),
            )
            .chain(self.manual.iter().map(|s| row("-".into(), "a person's", s)))
            .collect();
        let mut o = format!(
            "repair plan for {}: {} action(s)\n",
            self.node,
            self.steps.len()
        );
        o.push_str(&crate::check::text::columns(
            [
                "#", "WHOSE", "CATEGORY", "OWNER", "FINDING", "ACTION", "REPLACES",
            ],
            &rows,
        ));
        o
    }

    /// The readable plan.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "repair plan for {}: {} action(s)",
            self.node,
            self.steps.len()
        );
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(o, "  {:>2}. {}", i + 1, action_line(&s.action));
            let _ = writeln!(o, "      why: {} — {}", s.finding, s.why);
            let _ = writeln!(o, "      replaces: {}", s.replaces);
        }
        if !self.left_to_kube_proxy.is_empty() {
            let _ = writeln!(
                o,
                "left to kube-proxy (it rewrites its chains on every sync; a missing chain usually means kube-proxy itself is down — add `--include kube-proxy` to restore them now):"
            );
            for s in &self.left_to_kube_proxy {
                let _ = writeln!(o, "      {} ({})", action_line(&s.action), s.finding);
            }
        }
        if !self.manual.is_empty() {
            let _ = writeln!(o, "not a dataplane fix — what a person must change:");
            for s in &self.manual {
                let what = match &s.action {
                    RepairAction::Manual { what } => what.clone(),
                    other => action_line(other),
                };
                let _ = writeln!(o, "      {}: {}", s.finding, s.why);
                let _ = writeln!(o, "        change: {what}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterNetwork, expect};

    const NODE: &str = "k8s-node-12";

    fn plan_for(cluster: &crate::model::Cluster, state: &NodeState, opts: &Options) -> Plan {
        let findings = crate::check::run(cluster, &[(NODE.to_string(), state.clone())]);
        let net = ClusterNetwork::from_cluster(cluster).unwrap();
        plan(
            NODE,
            &findings,
            state,
            || expect::node(cluster, NODE, &net, state),
            opts,
        )
    }

    #[test]
    fn a_service_without_endpoints_is_a_persons_job_not_a_kernel_change() {
        let (mut c, s) = crate::check::fixtures::seed();
        c.endpoint_slices
            .iter_mut()
            .filter(|e| e.metadata.name.as_deref() == Some("nodeport-service-lab01"))
            .for_each(|e| e.endpoints.clear());
        let p = plan_for(&c, &s, &Options::default());
        assert!(p.is_empty() && !p.is_clean());
        assert_eq!(p.manual.len(), 1, "{p:#?}");
        assert_eq!(
            p.manual[0].finding,
            crate::check::FindingId::ServiceNoEndpoints
        );
        assert!(
            p.text().contains("change: find why the pods of"),
            "{}",
            p.text()
        );
    }

    /// `-o wide`: a header, then one line a step, applied, left to
    /// kube-proxy and a person's alike, every field in its column.
    #[test]
    fn the_wide_plan_is_one_line_a_step() {
        let (mut c, mut s) = crate::check::fixtures::seed();
        c.endpoint_slices
            .iter_mut()
            .filter(|e| e.metadata.name.as_deref() == Some("nodeport-service-lab01"))
            .for_each(|e| e.endpoints.clear());
        s.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24");
        let p = plan_for(&c, &s, &Options::default());
        let wide = p.text_wide();
        let lines: Vec<&str> = wide.lines().collect();
        assert!(lines[1].starts_with("#   WHOSE"), "{wide}");
        let rows = &lines[2..];
        assert_eq!(
            rows.len(),
            p.steps.len() + p.left_to_kube_proxy.len() + p.manual.len()
        );
        assert!(
            rows.iter()
                .any(|r| r.starts_with("1 ") && r.contains("route-missing")),
            "{wide}"
        );
        assert!(
            rows.iter()
                .any(|r| r.contains("a person's") && r.contains("service-no-endpoints")),
            "{wide}"
        );
        // Columns line up: FINDING starts at one offset on every line.
        let at = lines[1].find("FINDING").unwrap();
        assert!(
            rows.iter().all(|r| r.chars().nth(at - 1) == Some(' ')),
            "{wide}"
        );
    }

    #[test]
    fn flannel_chains_are_planned_with_their_restore_and_only_limits_them() {
        let (c, mut s) = crate::check::fixtures::seed();
        for b in &mut s.iptables {
            b.ruleset.table_mut("nat").remove_chain("FLANNEL-POSTRTG");
        }
        let p = plan_for(&c, &s, &Options::default());
        assert_eq!(p.steps.len(), 1, "{p:#?}");
        let r = p.steps[0].iptables.as_ref().unwrap();
        assert!(r.input.contains("-I POSTROUTING "), "{}", r.input);
        assert!(r.undo.contains("-D POSTROUTING "), "{}", r.undo);
        let only_routes = Options {
            only: vec![Category::Routes],
            ..Default::default()
        };
        assert!(plan_for(&c, &s, &only_routes).is_empty());
    }

    #[test]
    fn a_healthy_node_plans_nothing() {
        let (c, s) = crate::check::fixtures::seed();
        assert!(plan_for(&c, &s, &Options::default()).is_clean());
    }

    /// The kind of each overlay step, in plan order.
    fn overlay_order(p: &Plan) -> Vec<(IpAddr, &'static str)> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                RepairAction::NeighReplace { ip, .. } => Some((*ip, "neigh")),
                RepairAction::FdbReplace { dst, .. } => Some((*dst, "fdb")),
                RepairAction::RouteReplace { gateway, .. } => Some((*gateway, "route")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_peer_that_lost_everything_is_programmed_neigh_then_fdb_then_route() {
        let (c, mut s) = crate::check::fixtures::seed();
        let lost = |n: &crate::dataplane::state::Neigh| n.dev == "flannel.1";
        let macs: Vec<Mac> = s
            .neighs
            .iter()
            .filter(|n| lost(n))
            .filter_map(|n| n.mac())
            .collect();
        assert_eq!(macs.len(), 2, "two peers");
        s.neighs.retain(|n| !lost(n));
        s.fdb.retain(|f| !macs.contains(&f.mac));
        s.routes.retain(|r| r.dev.as_deref() != Some("flannel.1"));
        let p = plan_for(&c, &s, &Options::default());
        let kinds: Vec<&str> = overlay_order(&p).iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            ["neigh", "fdb", "route", "neigh", "fdb", "route"],
            "{}",
            p.text()
        );
    }

    #[test]
    fn a_wrong_neighbour_mac_is_fixed_before_the_fdb_entry_and_the_route() {
        let (c, mut s) = crate::check::fixtures::seed();
        let gw = "10.2.0.0".parse::<IpAddr>().unwrap();
        let mac = s
            .neighs
            .iter()
            .find(|n| n.dst == gw)
            .and_then(|n| n.mac())
            .unwrap();
        for n in s.neighs.iter_mut().filter(|n| n.dst == gw) {
            n.lladdr = Some("02:00:00:00:00:99".into());
        }
        s.fdb.retain(|f| f.mac != mac);
        s.routes.retain(|r| r.gateway != Some(gw));
        let p = plan_for(&c, &s, &Options::default());
        let kinds: Vec<&str> = overlay_order(&p).iter().map(|(_, k)| *k).collect();
        assert_eq!(kinds, ["neigh", "fdb", "route"], "{}", p.text());
    }
}
