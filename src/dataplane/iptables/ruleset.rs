//! An iptables ruleset as `iptables-restore` consumes it: tables of chains
//! of rule specs. This is what `expect()` produces for a node (kube-proxy's,
//! flannel's and the CNI portmap's chains) and what the lab loads.

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

/// One table (`filter`, `nat`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub chains: Vec<Chain>,
}

/// Several tables, rendered together into one `iptables-restore` input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Table {
    /// A table with its built-in chains at policy ACCEPT.
    pub fn new(name: &str) -> Self {
        Table {
            name: name.to_string(),
            chains: builtin_chains(name)
                .iter()
                .map(|c| Chain {
                    name: c.to_string(),
                    policy: Some("ACCEPT".into()),
                    rules: Vec::new(),
                })
                .collect(),
        }
    }

    /// The chain named `name`, created (as a user chain) if missing.
    pub fn chain_mut(&mut self, name: &str) -> &mut Chain {
        if let Some(i) = self.chains.iter().position(|c| c.name == name) {
            return &mut self.chains[i];
        }
        self.chains.push(Chain {
            name: name.to_string(),
            policy: None,
            rules: Vec::new(),
        });
        self.chains.last_mut().expect("just pushed")
    }

    /// The chain named `name`, if present.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// Appends `-A chain spec`.
    pub fn append(&mut self, chain: &str, spec: impl Into<String>) {
        self.chain_mut(chain).rules.push(spec.into());
    }

    /// Removes a user chain and every rule that jumps to it.
    pub fn remove_chain(&mut self, name: &str) {
        self.chains.retain(|c| c.name != name);
        let jump = format!("-j {name}");
        for c in &mut self.chains {
            c.rules
                .retain(|r| !(r.ends_with(&jump) || r.contains(&format!("{jump} "))));
        }
    }
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

    /// The `iptables-restore` input for all tables (each flushed and replaced).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            out.push_str(&format!("*{}\n", t.name));
            for c in &t.chains {
                out.push_str(&format!(
                    ":{} {} [0:0]\n",
                    c.name,
                    c.policy.as_deref().unwrap_or("-")
                ));
            }
            for c in &t.chains {
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
            .flat_map(|t| &t.chains)
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
        t.append("KUBE-SVC-A", "-j KUBE-SEP-1");
        t.remove_chain("KUBE-SVC-A");
        assert!(t.chain("KUBE-SVC-A").is_none());
        let svcs = &t.chain("KUBE-SERVICES").unwrap().rules;
        assert_eq!(svcs, &vec!["-d 10.1.0.2/32 -j KUBE-SVC-AB".to_string()]);
    }
}
