//! The faults of kube-proxy's and flannel's chains on a node whose owners
//! run in nftables mode: the same damage as in iptables mode, made to
//! `table ip kube-proxy` (`svc-chain-missing`, `nodeport-missing`,
//! `sep-stale`) or `table ip flannel-ipv4` (`masq-missing`), each a typed
//! table written back whole in one `nft -j -f` transaction.

use serde_json::{Value, json};

use super::faults::{Fault, dead_endpoint};
use super::topology::Topology;
use crate::dataplane::nft_table::NftTableSpec;
use crate::model::kube_proxy::ServicePort;

/// Whether map element `e` (`[key, verdict]`) goes to `chain`.
fn goes_to(e: &Value, chain: &str) -> bool {
    e[1]["goto"]["target"] == chain
}

/// Applies a flannel fault to flannel's nftables table: masq-missing
/// takes its `postrtg` chain away, as it takes FLANNEL-POSTRTG in iptables.
pub fn transform_flannel_table(t: &mut NftTableSpec, fault: Fault) {
    if fault == Fault::MasqMissing {
        t.chains.remove("postrtg");
    }
}

/// Applies a kube-proxy fault to kube-proxy's nftables table.
pub fn transform_table(
    t: &mut NftTableSpec,
    fault: Fault,
    ports: &[ServicePort],
    topo: &Topology,
    peer: Option<&str>,
) {
    let Some(sp) = ports
        .iter()
        .find(|p| p.namespace == "test-svc-ns" && p.service == "linux0224-nginx")
    else {
        return;
    };
    match fault {
        // The Service's chain is gone, and with it the map element that
        // led to it (nftables keeps no goto to a missing chain).
        Fault::SvcChainMissing => {
            let svc = sp.nft_service_chain();
            if let Some(m) = t.sets.get_mut("service-ips") {
                m.elem.retain(|e| !goes_to(e, &svc));
            }
            t.chains.remove(&svc);
        }
        Fault::NodeportMissing => {
            let np = json!(super::objects::NODE_PORT);
            if let Some(m) = t.sets.get_mut("service-nodeports") {
                m.elem.retain(|e| e[0]["concat"][1] != np);
            }
        }
        // The endpoint on the peer replaced by one nobody answers at.
        Fault::SepStale => {
            let Some(peer) = peer.and_then(|p| topo.nodes.iter().find(|n| n.name == p)) else {
                return;
            };
            let Some(live) = sp.endpoints.iter().find(|e| {
                e.split(':')
                    .next()
                    .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                    .is_some_and(|ip| peer.pod_cidr.contains(&ip))
            }) else {
                return;
            };
            let dead = dead_endpoint(peer);
            let (old, new) = (sp.nft_endpoint_chain(live), sp.nft_endpoint_chain(&dead));
            let (dead_ip, dead_port) = dead.rsplit_once(':').unwrap_or((&dead, "80"));
            let Some(mut chain) = t.chains.remove(&old) else {
                return;
            };
            for r in &mut chain.rules {
                for x in &mut r.expr {
                    if x.get("match").is_some() && x["match"]["left"]["payload"]["field"] == "saddr"
                    {
                        x["match"]["right"] = json!(dead_ip);
                    }
                    if x.get("dnat").is_some() {
                        x["dnat"] = json!({"addr": dead_ip, "port": dead_port.parse::<u16>().unwrap_or(80)});
                    }
                }
            }
            t.chains.insert(new.clone(), chain);
            let to_new = |v: &mut Value| {
                if v["goto"]["target"] == old.as_str() {
                    v["goto"]["target"] = json!(new);
                }
            };
            for c in t.chains.values_mut() {
                for r in &mut c.rules {
                    for x in &mut r.expr {
                        if let Some(set) = x
                            .pointer_mut("/vmap/data/set")
                            .and_then(Value::as_array_mut)
                        {
                            set.iter_mut().for_each(|pair| to_new(&mut pair[1]));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
