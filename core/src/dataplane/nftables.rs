//! The nftables tables a node holds (`nft -j list tables`): kube-proxy's
//! nftables mode (GA in Kubernetes 1.33) programs `table ip kube-proxy`
//! and `table ip6 kube-proxy` instead of iptables chains, so their presence
//! says which mode programs a node, whatever kube-proxy's ConfigMap says.

use serde::{Deserialize, Serialize};

use super::nft_table::NftTableSpec;

/// One table: `ip kube-proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftTable {
    pub family: String,
    pub name: String,
}

/// The table kube-proxy's nftables mode programs for IPv4.
pub const KUBE_PROXY_TABLE: (&str, &str) = ("ip", "kube-proxy");
/// The one its IPv6 proxier programs.
pub const KUBE_PROXY_TABLE6: (&str, &str) = ("ip6", "kube-proxy");

/// The tables in `nft -j list tables` output.
pub fn parse_tables(json: &str) -> Result<Vec<NftTable>, String> {
    #[derive(Deserialize)]
    struct Doc {
        nftables: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(doc
        .nftables
        .into_iter()
        .filter_map(|v| serde_json::from_value::<NftTable>(v.get("table")?.clone()).ok())
        .collect())
}

/// Whether `tables` hold kube-proxy's nftables-mode table.
pub fn has_kube_proxy(tables: &[NftTable]) -> bool {
    tables
        .iter()
        .any(|t| (t.family.as_str(), t.name.as_str()) == KUBE_PROXY_TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_and_kube_proxys_is_recognised() {
        // `nft -j list tables` on the lab's k8s-node-12 while the real
        // kube-proxy 1.32 programs it in nftables mode (provenance:
        // tests/fixtures/nftables/real/README.md).
        let json = include_str!(
            "../../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.tables.json"
        );
        let t = parse_tables(json).unwrap();
        assert_eq!(t.len(), 4);
        assert!(has_kube_proxy(&t));
        assert!(!has_kube_proxy(&t[..2]));
        let empty = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}]}"#;
        assert!(parse_tables(empty).unwrap().is_empty());
        assert!(parse_tables("table ip nat").is_err());
    }
}

/// What kube-proxy's nftables table says it does with Service traffic
/// (`nft -j list table ip kube-proxy`): the whole table, and read from it
/// the `service-ips` and `service-nodeports` verdict maps and per chain
/// where it goes next (a `numgen random` vmap over endpoint chains, a
/// plain goto) and the DNAT an endpoint chain makes. Only the table is
/// carried (in bundles, from agents); the rest is rebuilt from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "NftTableSpec", into = "NftTableSpec")]
pub struct KubeProxyTable {
    /// The table as the kernel holds it.
    pub table: NftTableSpec,
    /// `service-ips`: (address, protocol, port) → the chain it goes to.
    pub service_ips: Vec<((std::net::Ipv4Addr, String, u16), String)>,
    /// `service-nodeports`: (protocol, port) → the chain it goes to.
    pub nodeports: Vec<((String, u16), String)>,
    /// Chains by name: where each leads.
    pub chains: std::collections::BTreeMap<String, ChainLeads>,
    /// `no-endpoint-services` and `no-endpoint-nodeports`: the Service
    /// ports kube-proxy rejects for want of endpoints.
    pub rejected: Vec<ServiceKey>,
}

/// A key of kube-proxy's dispatch maps: a Service address and port
/// (`service-ips`, `no-endpoint-services`) or a NodePort
/// (`service-nodeports`, `no-endpoint-nodeports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceKey {
    Ip(std::net::Ipv4Addr, String, u16),
    NodePort(String, u16),
}

impl ServiceKey {
    /// The map that sends it to its Service's chain.
    pub fn map(&self) -> &'static str {
        match self {
            ServiceKey::Ip(..) => "service-ips",
            ServiceKey::NodePort(..) => "service-nodeports",
        }
    }

    /// The key of element `e` (`[{"concat": [...]}, verdict]`) of a map
    /// whose keys are Service addresses (`ip`) or NodePorts.
    fn of_element(e: &serde_json::Value, ip: bool) -> Option<ServiceKey> {
        let key = e[0]["concat"].as_array()?;
        match (ip, key.as_slice()) {
            (true, [addr, proto, port]) => Some(ServiceKey::Ip(
                addr.as_str()?.parse().ok()?,
                proto.as_str()?.to_string(),
                u16::try_from(port.as_u64()?).ok()?,
            )),
            (false, [proto, port]) => Some(ServiceKey::NodePort(
                proto.as_str()?.to_string(),
                u16::try_from(port.as_u64()?).ok()?,
            )),
            _ => None,
        }
    }
}

/// As nft prints the key: `10.1.0.10 . udp . 53`, `tcp . 30005`.
impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Ip(ip, proto, port) => write!(f, "{ip} . {proto} . {port}"),
            ServiceKey::NodePort(proto, port) => write!(f, "{proto} . {port}"),
        }
    }
}

/// Where a chain of kube-proxy's table leads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLeads {
    /// Chains it goes to (each endpoint of a Service's random choice).
    pub gotos: Vec<String>,
    /// The DNAT it makes, as `IP:port`.
    pub dnat: Option<String>,
}

impl From<KubeProxyTable> for NftTableSpec {
    fn from(t: KubeProxyTable) -> NftTableSpec {
        t.table
    }
}

impl From<NftTableSpec> for KubeProxyTable {
    fn from(table: NftTableSpec) -> KubeProxyTable {
        let mut t = KubeProxyTable::default();
        let elems = |name: &str| {
            table
                .sets
                .get(name)
                .map(|s| s.elem.clone())
                .unwrap_or_default()
        };
        for (map, ip) in [("service-ips", true), ("service-nodeports", false)] {
            for e in elems(map) {
                match (ServiceKey::of_element(&e, ip), goto_target(&e[1])) {
                    (Some(ServiceKey::Ip(a, p, n)), Some(chain)) => {
                        t.service_ips.push(((a, p, n), chain))
                    }
                    (Some(ServiceKey::NodePort(p, n)), Some(chain)) => {
                        t.nodeports.push(((p, n), chain))
                    }
                    _ => {}
                }
            }
        }
        for (map, ip) in [
            ("no-endpoint-services", true),
            ("no-endpoint-nodeports", false),
        ] {
            t.rejected.extend(
                elems(map)
                    .iter()
                    .filter_map(|e| ServiceKey::of_element(e, ip)),
            );
        }
        for (name, chain) in &table.chains {
            let leads = t.chains.entry(name.clone()).or_default();
            for expr in chain.rules.iter().flat_map(|r| &r.expr) {
                if let Some(target) = goto_target(expr) {
                    leads.gotos.push(target);
                }
                if let Some(set) = expr["vmap"]["data"]["set"].as_array() {
                    leads
                        .gotos
                        .extend(set.iter().filter_map(|pair| goto_target(&pair[1])));
                }
                if let Some(dnat) = expr.get("dnat")
                    && let (Some(addr), Some(port)) = (dnat["addr"].as_str(), dnat["port"].as_u64())
                {
                    leads.dnat = Some(format!("{addr}:{port}"));
                }
            }
        }
        t.table = table;
        t
    }
}

impl KubeProxyTable {
    /// Reads `nft -j list table ip kube-proxy`.
    pub fn parse_json(json: &str) -> Result<KubeProxyTable, String> {
        NftTableSpec::parse_listing(json).map(KubeProxyTable::from)
    }

    /// The DNAT targets `chain` leads to (following gotos, a few deep).
    pub fn endpoints(&self, chain: &str) -> Vec<String> {
        fn walk(t: &KubeProxyTable, chain: &str, depth: u8, out: &mut Vec<String>) {
            let Some(c) = t.chains.get(chain) else { return };
            if let Some(d) = &c.dnat {
                out.push(d.clone());
            }
            if depth < 4 {
                for g in &c.gotos {
                    walk(t, g, depth + 1, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, chain, 0, &mut out);
        out.sort();
        out
    }

    /// The chain `service-ips` sends `ip` `proto` `port` to.
    pub fn service(&self, ip: std::net::Ipv4Addr, proto: &str, port: u16) -> Option<&str> {
        self.service_ips
            .iter()
            .find(|((i, p, n), _)| *i == ip && p == proto && *n == port)
            .map(|(_, c)| c.as_str())
    }

    /// The chain `key`'s map sends it to.
    pub fn lookup(&self, key: &ServiceKey) -> Option<&str> {
        match key {
            ServiceKey::Ip(ip, proto, port) => self.service(*ip, proto, *port),
            ServiceKey::NodePort(proto, port) => self.nodeport(proto, *port),
        }
    }

    /// Whether kube-proxy rejects `key` as a Service port without
    /// endpoints (`no-endpoint-services` / `no-endpoint-nodeports`).
    pub fn rejects(&self, key: &ServiceKey) -> bool {
        self.rejected.contains(key)
    }

    /// The chain `service-nodeports` sends `proto` `port` to.
    pub fn nodeport(&self, proto: &str, port: u16) -> Option<&str> {
        self.nodeports
            .iter()
            .find(|((p, n), _)| p == proto && *n == port)
            .map(|(_, c)| c.as_str())
    }
}

/// The chain a `goto` or `jump` verdict names.
fn goto_target(v: &serde_json::Value) -> Option<String> {
    v.get("goto")
        .or_else(|| v.get("jump"))
        .and_then(|g| g["target"].as_str())
        .filter(|t| *t != "mark-for-masquerade")
        .map(str::to_string)
}

#[cfg(test)]
mod table_tests {
    use super::*;

    /// The real kube-proxy 1.32's table on the seed lab's k8s-node-12.
    const TABLE: &str = include_str!(
        "../../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.ip-kube-proxy.json"
    );

    #[test]
    fn services_and_nodeports_lead_to_their_endpoints() {
        let t = KubeProxyTable::parse_json(TABLE).unwrap();
        assert_eq!(t.service_ips.len(), 5);
        let chain = t
            .service("10.1.59.153".parse().unwrap(), "tcp", 80)
            .unwrap();
        assert_eq!(chain, "service-ATYLZNHX-test-svc-ns/linux0224-nginx/tcp/");
        assert_eq!(
            t.endpoints(chain),
            ["10.2.0.42:80", "10.2.1.117:80", "10.2.2.132:80"]
        );
        let dns = t.service("10.1.0.10".parse().unwrap(), "udp", 53).unwrap();
        assert_eq!(t.endpoints(dns), ["10.2.0.2:53", "10.2.1.2:53"]);
        let np = t.nodeport("tcp", 30005).unwrap();
        assert_eq!(
            t.endpoints(np),
            ["10.2.0.42:80", "10.2.1.117:80", "10.2.2.132:80"]
        );
        assert!(
            t.service("10.1.59.153".parse().unwrap(), "udp", 80)
                .is_none()
        );
        assert!(KubeProxyTable::parse_json("{}").is_err());
    }
}
