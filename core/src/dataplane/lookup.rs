//! The kernel's route lookup, over a NodeState: policy rules in priority
//! order, each naming a table, longest prefix match within a table (lowest
//! metric breaking ties). Enough for what pods and nodes route: unicast,
//! local, broadcast, blackhole and unreachable routes.

use std::net::IpAddr;

use ipnet::IpNet;

use super::state::{NodeState, Route};

/// The tables the policy rules send an ordinary packet to, in priority
/// order (the kernel's defaults when no rules were read).
fn lookup_tables(state: &NodeState) -> Vec<u32> {
    let mut rules: Vec<(u32, u32)> = state
        .rules
        .iter()
        .filter(|r| {
            r.action == "to_tbl"
                && r.src.as_deref().is_none_or(|s| s.ends_with("/0"))
                && r.dst.is_none()
                && r.fwmark.is_none()
                && r.iif.is_none()
        })
        .map(|r| (r.priority, r.table))
        .collect();
    if rules.is_empty() {
        rules = vec![(0, 255), (32766, 254), (32767, 253)];
    }
    rules.sort();
    rules.into_iter().map(|(_, t)| t).collect()
}

/// The route the kernel would pick for `dst`.
pub fn route(state: &NodeState, dst: IpAddr) -> Option<&Route> {
    lookup_tables(state)
        .into_iter()
        .find_map(|table| lpm(state, table, dst))
}

fn prefix(r: &Route) -> Option<IpNet> {
    match r.dst {
        crate::dataplane::RouteDst::Default => None,
        crate::dataplane::RouteDst::Net(n) => Some(n),
    }
}

fn lpm(state: &NodeState, table: u32, dst: IpAddr) -> Option<&Route> {
    state
        .routes
        .iter()
        .filter(|r| r.table == table && !r.flags.iter().any(|f| f == "linkdown" || f == "dead"))
        .filter_map(|r| match prefix(r) {
            Some(net) if net.contains(&dst) => Some((net.prefix_len(), r)),
            None if dst.is_ipv4() == r.gateway.is_none_or(|g| g.is_ipv4()) => Some((0, r)),
            _ => None,
        })
        .max_by_key(|(len, r)| (*len, std::cmp::Reverse(r.metric.unwrap_or(0))))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/nodestate/seed-k8s-node-12.json"
        ))
        .unwrap()
    }

    #[test]
    fn longest_prefix_over_the_real_tables() {
        let s = state();
        let r = route(&s, "10.2.0.42".parse().unwrap()).unwrap();
        assert_eq!(
            (
                r.dst.to_string().as_str(),
                r.dev.as_deref(),
                r.gateway.map(|g| g.to_string())
            ),
            ("10.2.0.0/24", Some("flannel.1"), Some("10.2.0.0".into()))
        );
        let local = route(&s, "10.2.2.132".parse().unwrap()).unwrap();
        assert_eq!(local.dev.as_deref(), Some("cni0"));
        // The node's own address hits the local table first.
        assert_eq!(
            route(&s, "192.168.56.12".parse().unwrap()).unwrap().kind,
            "local"
        );
        // No default route in the lab: a Service IP without DNAT goes nowhere.
        assert!(route(&s, "10.1.59.153".parse().unwrap()).is_none());
    }
}

/// Routes of one table with one prefix length, by network.
type SameLength = (u8, std::collections::HashMap<IpNet, Vec<usize>>);

/// A node's routes indexed for repeated lookups: per table, per prefix
/// length, the networks (longest first). Built once per node state.
#[derive(Debug, Default)]
pub struct RouteIndex {
    /// (table, [(prefix length, network -> route positions)] longest first)
    tables: Vec<(u32, Vec<SameLength>)>,
    rules: Vec<u32>,
}

impl RouteIndex {
    /// Indexes `state`'s usable routes and its plain lookup rules.
    pub fn build(state: &NodeState) -> Self {
        let mut tables: std::collections::BTreeMap<
            u32,
            std::collections::BTreeMap<u8, std::collections::HashMap<IpNet, Vec<usize>>>,
        > = Default::default();
        for (i, r) in state.routes.iter().enumerate() {
            if r.flags.iter().any(|f| f == "linkdown" || f == "dead") {
                continue;
            }
            let net = match prefix(r) {
                Some(n) => n.trunc(),
                None if r.gateway.is_none_or(|g| g.is_ipv4()) => IpNet::V4(Default::default()),
                None => IpNet::V6(Default::default()),
            };
            tables
                .entry(r.table)
                .or_default()
                .entry(net.prefix_len())
                .or_default()
                .entry(net)
                .or_default()
                .push(i);
        }
        RouteIndex {
            tables: tables
                .into_iter()
                .map(|(t, lens)| (t, lens.into_iter().rev().collect()))
                .collect(),
            rules: lookup_tables(state),
        }
    }

    /// The same answer as [`route`], in O(prefix lengths) hash lookups.
    pub fn route<'a>(&self, state: &'a NodeState, dst: IpAddr) -> Option<&'a Route> {
        self.rules.iter().find_map(|table| {
            let (_, lens) = self.tables.iter().find(|(t, _)| t == table)?;
            lens.iter().find_map(|(len, nets)| {
                let key = IpNet::new(dst, *len).ok()?.trunc();
                if key.addr().is_ipv4() != dst.is_ipv4() {
                    return None;
                }
                let candidates = nets.get(&key)?;
                candidates
                    .iter()
                    .map(|i| &state.routes[*i])
                    .min_by_key(|r| r.metric.unwrap_or(0))
            })
        })
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn the_index_agrees_with_the_scan() {
        let s: NodeState = serde_json::from_str(include_str!(
            "../../../tests/fixtures/nodestate/seed-k8s-node-12.json"
        ))
        .unwrap();
        let ix = RouteIndex::build(&s);
        for ip in [
            "10.2.0.42",
            "10.2.1.117",
            "10.2.2.132",
            "10.2.2.1",
            "192.168.56.12",
            "192.168.56.254",
            "10.1.59.153",
            "127.0.0.1",
            "8.8.8.8",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ix.route(&s, ip), route(&s, ip), "{ip}");
        }
    }
}
