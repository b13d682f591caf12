//! The nftables tables a node holds (`nft -j list tables`): kube-proxy's
//! nftables mode (GA in Kubernetes 1.33) programs `table ip kube-proxy`
//! and `table ip6 kube-proxy` instead of iptables chains, so their presence
//! says which mode programs a node, whatever kube-proxy's ConfigMap says.

use serde::{Deserialize, Serialize};

/// One table: `ip kube-proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftTable {
    pub family: String,
    pub name: String,
}

/// The table kube-proxy's nftables mode programs for IPv4.
pub const KUBE_PROXY_TABLE: (&str, &str) = ("ip", "kube-proxy");

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
