//! One nftables table as a value: what `nft -j list table FAMILY NAME`
//! prints, without the kernel's handles, so that the table a node holds and
//! the table its owner would write compare with `==`, differ in named
//! pieces ([`TableDiff`]), and go back to the kernel as one `nft -j -f`
//! transaction ([`NftTableSpec::replace_commands`]).
//!
//! Expressions and set elements stay in libnftables' JSON schema
//! (`serde_json::Value`): that schema is the one vocabulary the kernel's
//! listing, our expectation and `nft -j -f` share, so nothing is turned
//! into text and parsed back. Table and chain comments are left out: nft
//! 1.0.6's JSON listing does not print them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A set (`set`) or a map (`map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    Set,
    Map,
}

impl SetKind {
    fn key(self) -> &'static str {
        match self {
            SetKind::Set => "set",
            SetKind::Map => "map",
        }
    }
}

/// A named set or map of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftSet {
    pub kind: SetKind,
    /// Key type: `"ipv4_addr"`, or a concatenation as a list.
    #[serde(rename = "type")]
    pub key_type: Value,
    /// A map's value type (`"verdict"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// `["dynamic", "timeout"]` for kube-proxy's affinity sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    /// Elements in a canonical order (by their JSON text); a dynamic set's
    /// elements are what packets put there, not configuration, and are
    /// left out.
    #[serde(default)]
    pub elem: Vec<Value>,
}

impl NftSet {
    /// Whether packets fill it (`update @set`), so its elements are state.
    pub fn dynamic(&self) -> bool {
        self.flags
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "dynamic"))
    }

    fn normalize(&mut self) {
        if self.dynamic() {
            self.elem.clear();
        }
        self.elem.sort_by_cached_key(|e| e.to_string());
        // A set holds each element once (two ports of one ClusterIP put
        // the address in `cluster-ips` once).
        self.elem.dedup();
    }
}

/// Where a base chain hooks into the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseChain {
    /// `filter` or `nat`.
    #[serde(rename = "type")]
    pub chain_type: String,
    pub hook: String,
    pub prio: i64,
    pub policy: String,
}

impl BaseChain {
    /// A base chain of `chain_type` on `hook` at `prio` whose policy is
    /// accept (what kube-proxy and flannel hook in with).
    pub fn accepting(chain_type: &str, hook: &str, prio: i64) -> BaseChain {
        BaseChain {
            chain_type: chain_type.into(),
            hook: hook.into(),
            prio,
            policy: "accept".into(),
        }
    }
}

/// One chain: its hook (for a base chain) and its rules in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftChain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseChain>,
    #[serde(default)]
    pub rules: Vec<NftRule>,
}

/// One rule: its statements, and its comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftRule {
    pub expr: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl NftRule {
    /// A rule of these statements, without a comment.
    pub fn of(expr: Vec<Value>) -> NftRule {
        NftRule {
            expr,
            comment: None,
        }
    }
}

/// A whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftTableSpec {
    pub family: String,
    pub name: String,
    /// Sets and maps by name.
    #[serde(default)]
    pub sets: BTreeMap<String, NftSet>,
    /// Chains by name.
    #[serde(default)]
    pub chains: BTreeMap<String, NftChain>,
}

/// One way the table a node holds differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TableDiff {
    ChainMissing {
        chain: String,
    },
    /// The chain is there with other rules (or another hook).
    ChainDiffers {
        chain: String,
    },
    /// A chain the expectation does not have.
    ChainExtra {
        chain: String,
    },
    SetMissing {
        set: String,
    },
    /// Elements the set or map lacks.
    ElementsMissing {
        set: String,
        elem: Vec<Value>,
    },
    /// Elements it holds beyond the expected ones.
    ElementsExtra {
        set: String,
        elem: Vec<Value>,
    },
}

/// As a person reads it: `chain masquerading missing`, `service-ips lacks
/// 10.1.0.10 . udp . 53`.
impl std::fmt::Display for TableDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |elem: &[Value]| elem.iter().map(element_key).collect::<Vec<_>>().join(", ");
        match self {
            TableDiff::ChainMissing { chain } => write!(f, "chain {chain} missing"),
            TableDiff::ChainDiffers { chain } => write!(f, "chain {chain} differs"),
            TableDiff::ChainExtra { chain } => write!(f, "stale chain {chain}"),
            TableDiff::SetMissing { set } => write!(f, "set {set} missing"),
            TableDiff::ElementsMissing { set, elem } => write!(f, "{set} lacks {}", keys(elem)),
            TableDiff::ElementsExtra { set, elem } => {
                write!(f, "{set} holds stale {}", keys(elem))
            }
        }
    }
}

/// The key of a set or map element as `nft` prints it (`10.1.0.10 . udp .
/// 53`): a map element's key is its first half.
pub fn element_key(elem: &Value) -> String {
    let key = match elem.as_array() {
        Some(pair) if pair.len() == 2 => &pair[0],
        _ => elem,
    };
    let scalar = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    match key.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().map(scalar).collect::<Vec<_>>().join(" . "),
        None => scalar(key),
    }
}

impl NftTableSpec {
    /// An empty table.
    pub fn new(family: &str, name: &str) -> NftTableSpec {
        NftTableSpec {
            family: family.to_string(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Reads `nft -j list table FAMILY NAME`.
    pub fn parse_listing(json: &str) -> Result<NftTableSpec, String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let items = doc["nftables"]
            .as_array()
            .ok_or("no \"nftables\" list in the output")?;
        let mut t = NftTableSpec::default();
        for item in items {
            if let Some(table) = item.get("table") {
                t.family = str_of(table, "family")?;
                t.name = str_of(table, "name")?;
            }
            for kind in [SetKind::Set, SetKind::Map] {
                if let Some(s) = item.get(kind.key()) {
                    let name = str_of(s, "name")?;
                    let mut set = NftSet {
                        kind,
                        key_type: s["type"].clone(),
                        map: s["map"].as_str().map(str::to_string),
                        flags: s.get("flags").cloned(),
                        timeout: s.get("timeout").cloned(),
                        elem: s["elem"].as_array().cloned().unwrap_or_default(),
                    };
                    set.normalize();
                    t.sets.insert(name, set);
                }
            }
            if let Some(c) = item.get("chain") {
                let base = match c.get("hook") {
                    Some(_) => Some(serde_json::from_value(c.clone()).map_err(|e| e.to_string())?),
                    None => None,
                };
                t.chains.entry(str_of(c, "name")?).or_default().base = base;
            }
            if let Some(r) = item.get("rule") {
                let rule = NftRule {
                    expr: r["expr"].as_array().cloned().unwrap_or_default(),
                    comment: r["comment"].as_str().map(str::to_string),
                };
                t.chains
                    .entry(str_of(r, "chain")?)
                    .or_default()
                    .rules
                    .push(rule);
            }
        }
        if t.name.is_empty() {
            return Err("the output holds no table".into());
        }
        Ok(t)
    }

    /// Puts the elements of every set in canonical order (after building
    /// one by hand).
    pub fn normalize(&mut self) {
        for s in self.sets.values_mut() {
            s.normalize();
        }
    }

    /// How `actual` differs from `self` (the expected table).
    pub fn diff(&self, actual: &NftTableSpec) -> Vec<TableDiff> {
        let mut out = Vec::new();
        for (name, want) in &self.chains {
            match actual.chains.get(name) {
                None => out.push(TableDiff::ChainMissing {
                    chain: name.clone(),
                }),
                Some(have) if have != want => out.push(TableDiff::ChainDiffers {
                    chain: name.clone(),
                }),
                Some(_) => {}
            }
        }
        for name in actual.chains.keys() {
            if !self.chains.contains_key(name) {
                out.push(TableDiff::ChainExtra {
                    chain: name.clone(),
                });
            }
        }
        for (name, want) in &self.sets {
            let Some(have) = actual.sets.get(name) else {
                out.push(TableDiff::SetMissing { set: name.clone() });
                continue;
            };
            let missing: Vec<Value> = want
                .elem
                .iter()
                .filter(|e| !have.elem.contains(e))
                .cloned()
                .collect();
            let extra: Vec<Value> = have
                .elem
                .iter()
                .filter(|e| !want.elem.contains(e))
                .cloned()
                .collect();
            if !missing.is_empty() {
                out.push(TableDiff::ElementsMissing {
                    set: name.clone(),
                    elem: missing,
                });
            }
            if !extra.is_empty() {
                out.push(TableDiff::ElementsExtra {
                    set: name.clone(),
                    elem: extra,
                });
            }
        }
        out
    }

    /// The `nft -j -f -` input that makes the table exactly `self` in one
    /// transaction: the table is added (so that deleting it cannot fail),
    /// deleted, and written anew — chains first (map elements and rules
    /// jump to them), then sets with their elements, then rules.
    pub fn replace_commands(&self) -> String {
        let id = json!({"family": self.family, "name": self.name});
        let mut cmds = vec![
            json!({"add": {"table": id}}),
            json!({"delete": {"table": id}}),
        ];
        cmds.extend(self.add_commands());
        json!({ "nftables": cmds }).to_string()
    }

    /// The `nft -j -f -` input that deletes the table (the undo of writing
    /// a table that was not there).
    pub fn delete_commands(family: &str, name: &str) -> String {
        let id = json!({"family": family, "name": name});
        json!({"nftables": [{"add": {"table": id}}, {"delete": {"table": id}}]}).to_string()
    }

    fn add_commands(&self) -> Vec<Value> {
        let (family, table) = (&self.family, &self.name);
        let mut cmds = vec![json!({"add": {"table": {"family": family, "name": table}}})];
        for (name, c) in &self.chains {
            let mut chain = json!({"family": family, "table": table, "name": name});
            if let Some(b) = &c.base {
                chain["type"] = json!(b.chain_type);
                chain["hook"] = json!(b.hook);
                chain["prio"] = json!(b.prio);
                chain["policy"] = json!(b.policy);
            }
            cmds.push(json!({"add": {"chain": chain}}));
        }
        for (name, s) in &self.sets {
            let mut set =
                json!({"family": family, "table": table, "name": name, "type": s.key_type});
            for (key, v) in [
                ("map", s.map.as_ref().map(|m| json!(m))),
                ("flags", s.flags.clone()),
                ("timeout", s.timeout.clone()),
            ] {
                if let Some(v) = v {
                    set[key] = v;
                }
            }
            if !s.elem.is_empty() {
                set["elem"] = json!(s.elem);
            }
            cmds.push(json!({"add": {s.kind.key(): set}}));
        }
        for (name, c) in &self.chains {
            for r in &c.rules {
                let mut rule =
                    json!({"family": family, "table": table, "chain": name, "expr": r.expr});
                if let Some(text) = &r.comment {
                    rule["comment"] = json!(text);
                }
                cmds.push(json!({"add": {"rule": rule}}));
            }
        }
        cmds
    }
}

fn str_of(v: &Value, key: &str) -> Result<String, String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("an object without \"{key}\": {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = include_str!(
        "../../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.ip-kube-proxy.json"
    );

    #[test]
    fn the_real_table_reads_whole_and_diffs_by_piece() {
        let t = NftTableSpec::parse_listing(TABLE).unwrap();
        assert_eq!((t.family.as_str(), t.name.as_str()), ("ip", "kube-proxy"));
        assert_eq!(t.chains.len(), 33);
        assert_eq!(t.sets.len(), 7);
        assert_eq!(t.sets["cluster-ips"].elem.len(), 4);
        assert_eq!(t.sets["service-ips"].elem.len(), 5);
        let nat_post = &t.chains["nat-postrouting"];
        assert_eq!(nat_post.base.as_ref().unwrap().prio, 100);
        assert_eq!(t.chains["masquerading"].rules.len(), 3);
        assert!(t.diff(&t).is_empty());

        let mut broken = t.clone();
        broken.chains.remove("masquerading");
        broken.chains.get_mut("services").unwrap().rules.pop();
        let dns_udp = broken.sets["service-ips"].elem[1].clone();
        broken
            .sets
            .get_mut("service-ips")
            .unwrap()
            .elem
            .retain(|e| *e != dns_udp);
        broken.chains.insert("stray".into(), NftChain::default());
        assert_eq!(
            t.diff(&broken),
            [
                TableDiff::ChainMissing {
                    chain: "masquerading".into()
                },
                TableDiff::ChainDiffers {
                    chain: "services".into()
                },
                TableDiff::ChainExtra {
                    chain: "stray".into()
                },
                TableDiff::ElementsMissing {
                    set: "service-ips".into(),
                    elem: vec![dns_udp]
                },
            ]
        );
        assert!(NftTableSpec::parse_listing("{\"nftables\": []}").is_err());
        assert!(NftTableSpec::parse_listing("table ip x").is_err());
    }

    #[test]
    fn replace_writes_chains_before_the_maps_and_rules_that_name_them() {
        let t = NftTableSpec::parse_listing(TABLE).unwrap();
        let cmds: Value = serde_json::from_str(&t.replace_commands()).unwrap();
        let kinds: Vec<String> = cmds["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let (verb, obj) = c.as_object().unwrap().iter().next().unwrap();
                format!("{verb} {}", obj.as_object().unwrap().keys().next().unwrap())
            })
            .collect();
        assert_eq!(kinds[..3], ["add table", "delete table", "add table"]);
        let first = |k: &str| kinds.iter().position(|x| x == k).unwrap();
        let last = |k: &str| kinds.iter().rposition(|x| x == k).unwrap();
        assert!(last("add chain") < first("add map"));
        assert!(last("add map").max(last("add set")) < first("add rule"));
        assert_eq!(kinds.iter().filter(|k| *k == "add rule").count(), 56);
    }
}
