//! An iptables ruleset as `iptables-restore` consumes it: tables of chains
//! of rule specs. This is what `expect()` produces for a node (kube-proxy's,
//! flannel's and the CNI portmap's chains) and what the lab loads.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Built-in chains per table, in the order iptables-save prints them.
pub fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        _ => &[],
    }
}

/// One chain: built-in chains have a policy, user chains do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    /// `ACCEPT`/`DROP` for a built-in chain; `None` for a user chain.
    pub policy: Option<String>,
    /// Rule specs, each the text after `-A <chain> `.
    pub rules: Vec<String>,
}

/// One table (`filter`, `nat`, ...). Chains keep their order; a name index
/// kept by every method that adds, removes or renames chains makes lookups
/// constant-time (kube-proxy's nat table has tens of thousands of chains).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "TableData", into = "TableData")]
pub struct Table {
    pub name: String,
    chains: Vec<Chain>,
    index: HashMap<String, usize>,
}

/// Two tables are equal when their chains are: the index follows from
/// them, and comparing it would hash each of 40,000 chain names again (the
/// live path compares a node's rules on every change).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.name == other.name && self.chains == other.chains
    }
}

impl Eq for Table {}

/// A table as it is serialized (the index is rebuilt on load).
#[derive(Serialize, Deserialize)]
struct TableData {
    name: String,
    chains: Vec<Chain>,
}

impl From<TableData> for Table {
    fn from(d: TableData) -> Self {
        let mut t = Table {
            name: d.name,
            chains: d.chains,
            index: HashMap::new(),
        };
        t.reindex();
        t
    }
}

impl From<Table> for TableData {
    fn from(t: Table) -> Self {
        TableData {
            name: t.name,
            chains: t.chains,
        }
    }
}

impl Table {
    /// A table with its built-in chains at policy ACCEPT.
    pub fn new(name: &str) -> Self {
        let mut t = Table::empty(name);
        for c in builtin_chains(name) {
            t.push_chain(Chain {
                name: c.to_string(),
                policy: Some("ACCEPT".into()),
                rules: Vec::new(),
            });
        }
        t
    }

    /// A table with no chains at all (as a parser starts one).
    pub fn empty(name: &str) -> Self {
        Table {
            name: name.to_string(),
            chains: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
    }

    /// The chains, in order.
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// Adds a chain; an existing chain of the same name is replaced.
    pub fn push_chain(&mut self, chain: Chain) {
        match self.index.get(&chain.name) {
            Some(&i) => self.chains[i] = chain,
            None => {
                self.index.insert(chain.name.clone(), self.chains.len());
                self.chains.push(chain);
            }
        }
    }

    /// The chain named `name`, created (as a user chain) if missing.
    pub fn chain_mut(&mut self, name: &str) -> &mut Chain {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.push_chain(Chain {
                    name: name.to_string(),
                    policy: None,
                    rules: Vec::new(),
                });
                self.chains.len() - 1
            }
        };
        &mut self.chains[i]
    }

    /// The chain named `name`, if present.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.index.get(name).map(|&i| &self.chains[i])
    }

    /// Appends `-A chain spec`.
    pub fn append(&mut self, chain: &str, spec: impl Into<String>) {
        self.chain_mut(chain).rules.push(spec.into());
    }

    /// Removes a user chain and every rule that jumps to it.
    pub fn remove_chain(&mut self, name: &str) {
        self.chains.retain(|c| c.name != name);
        // A goto names a chain as a jump does (iptables refuses to delete
        // a chain either still points to).
        for c in &mut self.chains {
            c.rules
                .retain(|r| !super::RuleSpec::jump_words(r).any(|w| w == name));
        }
        self.reindex();
    }

    /// Keeps only the chains `keep` accepts.
    pub fn retain_chains(&mut self, keep: impl FnMut(&Chain) -> bool) {
        self.chains.retain(keep);
        self.reindex();
    }

    /// Renames a chain (jumps to it are not rewritten).
    pub fn rename_chain(&mut self, old: &str, new: &str) {
        if let Some(i) = self.index.remove(old) {
            self.chains[i].name = new.to_string();
            self.index.insert(new.to_string(), i);
        }
    }

    /// Every chain, mutably, for rewriting rules (names stay as they are).
    pub fn rules_mut(&mut self) -> impl Iterator<Item = (&str, &mut Vec<String>)> {
        self.chains
            .iter_mut()
            .map(|c| (c.name.as_str(), &mut c.rules))
    }
}

/// Several tables, rendered together into one `iptables-restore` input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Ruleset {
    /// The table named `name`, created with its built-in chains if missing.
    pub fn table_mut(&mut self, name: &str) -> &mut Table {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return &mut self.tables[i];
        }
        self.tables.push(Table::new(name));
        self.tables.last_mut().expect("just pushed")
    }

    /// The table named `name`, if present.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The rules of `table`/`chain`, typed (rules that do not parse are left out).
    pub fn specs(&self, table: &str, chain: &str) -> Vec<super::RuleSpec> {
        self.table(table)
            .and_then(|t| t.chain(chain))
            .map(|c| {
                c.rules
                    .iter()
                    .filter_map(|r| super::RuleSpec::parse(r).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `iptables-restore` input for all tables (each flushed and replaced).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            out.push_str(&format!("*{}\n", t.name));
            for c in t.chains() {
                out.push_str(&format!(
                    ":{} {} [0:0]\n",
                    c.name,
                    c.policy.as_deref().unwrap_or("-")
                ));
            }
            for c in t.chains() {
                for r in &c.rules {
                    out.push_str(&format!("-A {} {}\n", c.name, r));
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// Number of rules over all tables.
    pub fn rule_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| t.chains())
            .map(|c| c.rules.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_declares_chains_before_rules() {
        let mut rs = Ruleset::default();
        let nat = rs.table_mut("nat");
        nat.append("PREROUTING", "-j KUBE-SERVICES");
        nat.append("KUBE-SERVICES", "-d 10.1.0.10/32 -j KUBE-SVC-X");
        nat.chain_mut("KUBE-SVC-X");
        let text = rs.render();
        let decl = text.find(":KUBE-SVC-X - [0:0]").unwrap();
        let first_rule = text.find("-A ").unwrap();
        assert!(decl < first_rule, "{text}");
        assert!(text.starts_with("*nat\n:PREROUTING ACCEPT [0:0]\n"));
        assert!(text.ends_with("COMMIT\n"));
    }

    #[test]
    fn remove_chain_drops_jumps() {
        let mut t = Table::new("nat");
        t.append("KUBE-SERVICES", "-d 10.1.0.1/32 -j KUBE-SVC-A");
        t.append("KUBE-SERVICES", "-d 10.1.0.2/32 -j KUBE-SVC-AB");
        t.append("KUBE-SERVICES", "-d 10.1.0.3/32 --goto KUBE-SVC-A");
        t.append("KUBE-SVC-A", "-j KUBE-SEP-1");
        t.remove_chain("KUBE-SVC-A");
        assert!(t.chain("KUBE-SVC-A").is_none());
        let svcs = &t.chain("KUBE-SERVICES").unwrap().rules;
        assert_eq!(svcs, &vec!["-d 10.1.0.2/32 -j KUBE-SVC-AB".to_string()]);
    }
}
