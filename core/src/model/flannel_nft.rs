//! flannel's nftables mode (`"EnableNFTables": true` in net-conf.json,
//! flannel 0.25 and later), mirrored from flannel's
//! `pkg/trafficmngr/nftables/nftables.go`: instead of the FLANNEL-POSTRTG
//! and FLANNEL-FWD iptables chains it writes `table ip flannel-ipv4` with a
//! `forward` chain (filter, forward hook, priority filter) accepting the
//! cluster network both ways, and a `postrtg` chain (nat, postrouting,
//! priority srcnat) that leaves kube-proxy's marked packets and traffic
//! within the overlay alone and masquerades pod traffic leaving it. (Its
//! third rule differs from the iptables mode's: `ip saddr != POD_CIDR`.)

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::dataplane::nft_table::{BaseChain, NftChain, NftRule, NftTableSpec};

/// The table flannel's nftables mode writes for IPv4.
pub const TABLE: (&str, &str) = ("ip", "flannel-ipv4");

fn addr(field: &str, op: &str, net: Ipv4Net) -> Value {
    json!({"match": {
        "op": op,
        "left": {"payload": {"protocol": "ip", "field": field}},
        "right": {"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}},
    }})
}

fn chain(chain_type: &str, hook: &str, prio: i64, rules: Vec<Vec<Value>>) -> NftChain {
    NftChain {
        base: Some(BaseChain::accepting(chain_type, hook, prio)),
        rules: rules.into_iter().map(NftRule::of).collect(),
    }
}

/// The table flannel writes on a node whose pod CIDR is `pod_cidr`, in a
/// cluster network `cluster_cidr`.
pub fn table(cluster_cidr: Ipv4Net, pod_cidr: Ipv4Net) -> NftTableSpec {
    let (cluster, pod) = (cluster_cidr, pod_cidr);
    let ret = || json!({"return": null});
    let masq = || json!({"masquerade": {"flags": "fully-random"}});
    let multicast: Ipv4Net = "224.0.0.0/4".parse().expect("a literal network");
    let mut t = NftTableSpec::new(TABLE.0, TABLE.1);
    t.chains.insert(
        "forward".into(),
        chain(
            "filter",
            "forward",
            0,
            vec![
                vec![addr("saddr", "==", cluster), json!({"accept": null})],
                vec![addr("daddr", "==", cluster), json!({"accept": null})],
            ],
        ),
    );
    t.chains.insert(
        "postrtg".into(),
        chain(
            "nat",
            "postrouting",
            100,
            vec![
                vec![
                    json!({"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 0x4000}}),
                    ret(),
                ],
                vec![addr("saddr", "==", pod), addr("daddr", "==", cluster), ret()],
                vec![addr("saddr", "==", cluster), addr("daddr", "==", pod), ret()],
                vec![addr("saddr", "!=", pod), addr("daddr", "==", cluster), ret()],
                vec![addr("saddr", "==", cluster), addr("daddr", "!=", multicast), masq()],
                vec![addr("saddr", "!=", cluster), addr("daddr", "==", cluster), masq()],
            ],
        ),
    );
    t
}

/// Whether `t`'s postrtg chain masquerades anything (what trace asks of
/// pod traffic leaving the cluster).
pub fn masquerades(t: &NftTableSpec) -> bool {
    t.chains.get("postrtg").is_some_and(|c| {
        c.rules
            .iter()
            .any(|r| r.expr.iter().any(|x| x.get("masquerade").is_some()))
    })
}
