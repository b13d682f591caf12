//! Restoring named iptables chains (pure): the `iptables-restore --noflush`
//! input that makes exactly the chains a plan names what `expect()` says,
//! adds the missing jumps into them from the chains around them, and removes
//! a named chain the expectation no longer has; and, from what the node
//! holds now, the input that puts it all back. Nothing the plan does not
//! name is flushed, rewritten or removed — as kube-proxy and flannel write
//! their own chains (`:CHAIN - [0:0]` flushes one chain under `--noflush`).

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::dataplane::NodeState;
use crate::dataplane::iptables::{Chain, RuleSpec, Ruleset, Table, builtin_chains};
use crate::model::index::{HashMap, HashSet};

/// How one chains action is carried out and undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainsRestore {
    /// `nft` or `legacy`: the iptables backend the node's rules live in.
    pub backend: String,
    /// The `iptables-restore --noflush` input that writes the chains.
    pub input: String,
    /// The input that puts back what the node has now.
    pub undo: String,
    /// What it replaces, as a person reads it.
    pub replaces: String,
}

/// The restore tool of an iptables backend.
pub fn restore_tool(backend: &str) -> &'static str {
    if backend == "legacy" {
        "iptables-legacy-restore"
    } else {
        "iptables-nft-restore"
    }
}

/// The backend the node's Kubernetes rules live in (the one with kube-proxy's
/// or flannel's chains, else the only one there is).
fn backend(node: &NodeState) -> Option<&crate::dataplane::state::IptablesBackendState> {
    let ours = |rs: &Ruleset| {
        rs.tables.iter().any(|t| {
            t.chains()
                .iter()
                .any(|c| c.name.starts_with("KUBE-") || c.name.starts_with("FLANNEL-"))
        })
    };
    node.iptables
        .iter()
        .find(|b| ours(&b.ruleset))
        .or(node.iptables.first())
}

/// The rules of a table by the chain their `-j`/`-g` word names (chain
/// and rule index, in table order). A plan restores chains for each
/// finding that asks, and at scale hundreds ask at once (an endpoint
/// change leaves a stale chain per Service port until kube-proxy syncs):
/// looking through the 113,000 rules of 10,000 Services for jumps into
/// each finding's chains took the dashboard's plan worker 24 s of CPU in
/// a 45 s burst (`benches/tui_watch`). The word is a superset of the
/// targets (a rule is parsed to be sure only when its word is asked for).
struct Jumps<'t> {
    /// `None`: the side lacks the table (no chains).
    table: Option<&'t Table>,
    to: HashMap<&'t str, Vec<(usize, usize)>>,
    /// Per chain (by index) that gets an insert, where each of its rules
    /// first stands: "put before it" is then a lookup, not a search of
    /// the rules before it (KUBE-SERVICES holds 10,000 at scale, and each
    /// restore inserting there built this again).
    first_at: std::cell::RefCell<HashMap<usize, Rc<HashMap<&'t str, usize>>>>,
}

impl<'t> Jumps<'t> {
    fn of(table: Option<&'t Table>) -> Jumps<'t> {
        let mut to: HashMap<&str, Vec<(usize, usize)>> = HashMap::default();
        for (c, chain) in table
            .map(Table::chains)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            for (r, rule) in chain.rules.iter().enumerate() {
                for target in RuleSpec::jump_words(rule) {
                    to.entry(target).or_default().push((c, r));
                }
            }
        }
        Jumps {
            table,
            to,
            first_at: Default::default(),
        }
    }

    /// Where each rule of chain `c` first stands in it.
    fn first_at(&self, c: usize) -> Rc<HashMap<&'t str, usize>> {
        let chain = &self.chains()[c];
        (self.first_at.borrow_mut().entry(c))
            .or_insert_with(|| {
                let mut at = HashMap::default();
                for (k, r) in chain.rules.iter().enumerate().rev() {
                    at.insert(r.as_str(), k);
                }
                Rc::new(at)
            })
            .clone()
    }

    /// The rules of the chains not `named` whose target is one of
    /// `chains` (the word may be a comment's: the parsed jump is what
    /// counts), in table order, with their target.
    fn targeting<'c>(
        &self,
        chains: &HashSet<&'c str>,
        named: &HashSet<&str>,
    ) -> Vec<(usize, usize, &'c str)> {
        let all = self.chains();
        let mut found: Vec<(usize, usize, &'c str)> = chains
            .iter()
            .flat_map(|c| self.to.get(c).into_iter().flatten().map(move |at| (at, *c)))
            .filter(|((ci, _), _)| !named.contains(all[*ci].name.as_str()))
            .filter(|((ci, ri), c)| {
                let rule = &all[*ci].rules[*ri];
                RuleSpec::parse(rule).ok().and_then(|r| r.target).as_deref() == Some(*c)
            })
            .map(|((ci, ri), c)| (*ci, *ri, c))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    fn chains(&self) -> &'t [Chain] {
        self.table.map(Table::chains).unwrap_or_default()
    }

    fn chain(&self, name: &str) -> Option<&'t Chain> {
        self.table?.chain(name)
    }
}

/// Works out chain restores for one node against one expectation,
/// indexing each table's jumps once for all the restores a plan asks for.
pub struct Restorer<'a> {
    expected: &'a Ruleset,
    /// The backend the node's rules live in ([`backend`]: a look at every
    /// chain's name, 41,000 at scale, done once for the whole plan).
    backend: Option<&'a crate::dataplane::state::IptablesBackendState>,
    /// Per table: the expectation's jumps and the node's.
    jumps: std::cell::RefCell<HashMap<String, Rc<(Jumps<'a>, Jumps<'a>)>>>,
}

impl<'a> Restorer<'a> {
    pub fn new(expected: &'a Ruleset, node: &'a NodeState) -> Restorer<'a> {
        Restorer {
            expected,
            backend: backend(node),
            jumps: Default::default(),
        }
    }

    /// The restore that makes `chains` of `table` on the node as
    /// expected ([`restore`]).
    pub fn restore(&self, table: &str, chains: &[String]) -> Option<ChainsRestore> {
        let b = self.backend?;
        let jumps = (self.jumps.borrow_mut())
            .entry(table.to_string())
            .or_insert_with(|| {
                let want = Jumps::of(self.expected.table(table));
                Rc::new((want, Jumps::of(b.ruleset.table(table))))
            })
            .clone();
        restore_with(table, chains, b, &jumps.0, &jumps.1)
    }
}

/// A jump to insert: into `chain` at 1-based `position`.
struct Insert {
    chain: String,
    position: usize,
    rule: String,
}

/// The restore that makes `chains` of `table` on `node` as in `expected`,
/// or `None` when the node has no iptables rules to tell the backend by.
/// A plan restoring several sets of chains uses one [`Restorer`].
pub fn restore(
    table: &str,
    chains: &[String],
    expected: &Ruleset,
    node: &NodeState,
) -> Option<ChainsRestore> {
    Restorer::new(expected, node).restore(table, chains)
}

/// [`restore`] from the expected table's jumps (`want`) and the node's
/// (`have`).
fn restore_with(
    table: &str,
    chains: &[String],
    b: &crate::dataplane::state::IptablesBackendState,
    want: &Jumps<'_>,
    have: &Jumps<'_>,
) -> Option<ChainsRestore> {
    let builtin = builtin_chains(table);
    let named: Vec<&str> = chains
        .iter()
        .map(String::as_str)
        .filter(|c| !builtin.contains(c))
        .collect();
    let is_named: HashSet<&str> = named.iter().copied().collect();
    let written: Vec<&str> = named
        .iter()
        .copied()
        .filter(|c| want.chain(c).is_some())
        .collect();
    let is_written: HashSet<&str> = written.iter().copied().collect();
    // A named chain the expectation lacks goes, unless a chain the plan
    // does not name still jumps to it.
    let gone: HashSet<&str> = named
        .iter()
        .copied()
        .filter(|c| want.chain(c).is_none() && have.chain(c).is_some())
        .collect();
    let still_jumped_to: HashSet<&str> = (have.targeting(&gone, &is_named).into_iter())
        .map(|(.., c)| c)
        .collect();
    let removed: Vec<&str> = named
        .iter()
        .copied()
        .filter(|c| gone.contains(c) && !still_jumped_to.contains(c))
        .collect();
    // Jumps into the written chains from chains the plan does not name, at
    // the place the expectation has them among the rules the node holds.
    let mut inserts = Vec::new();
    let jumps_in = want.targeting(&is_written, &is_named);
    for by_chain in jumps_in.chunk_by(|a, b| a.0 == b.0) {
        let p = &want.chains()[by_chain[0].0];
        let Some(held) = have.chain(&p.name) else {
            continue;
        };
        // The chain's rules as the inserts so far leave them.
        let mut now: Option<Vec<&str>> = None;
        let mut first_at = None;
        for &(_, i, _) in by_chain {
            let rule = p.rules[i].as_str();
            let now = now.get_or_insert_with(|| held.rules.iter().map(String::as_str).collect());
            if now.contains(&rule) {
                continue;
            }
            // Just after the last rule the expectation puts before it.
            let first_at = first_at.get_or_insert_with(|| want.first_at(by_chain[0].0));
            let position = 1 + now
                .iter()
                .rposition(|r| first_at.get(r).is_some_and(|&k| k < i))
                .map_or(0, |k| k + 1);
            now.insert(position - 1, rule);
            inserts.push(Insert {
                chain: p.name.clone(),
                position,
                rule: rule.to_string(),
            });
        }
    }

    let mut input = format!("*{table}\n");
    for c in written.iter().chain(&removed) {
        input.push_str(&format!(":{c} - [0:0]\n"));
    }
    for c in &written {
        for r in &want.chain(c).expect("written chains are expected").rules {
            input.push_str(&format!("-A {c} {r}\n"));
        }
    }
    for i in &inserts {
        input.push_str(&format!("-I {} {} {}\n", i.chain, i.position, i.rule));
    }
    for c in &removed {
        input.push_str(&format!("-X {c}\n"));
    }
    input.push_str("COMMIT\n");

    // The inverse: the touched chains as they are, the jumps taken out
    // again, the chains this creates removed.
    let mut undo = format!("*{table}\n");
    let touched: Vec<&str> = written.iter().chain(&removed).copied().collect();
    for c in &touched {
        undo.push_str(&format!(":{c} - [0:0]\n"));
    }
    for i in &inserts {
        undo.push_str(&format!("-D {} {}\n", i.chain, i.rule));
    }
    for c in &touched {
        for r in have.chain(c).map(|c| &c.rules[..]).unwrap_or_default() {
            undo.push_str(&format!("-A {c} {r}\n"));
        }
    }
    for c in touched.iter().filter(|c| have.chain(c).is_none()) {
        undo.push_str(&format!("-X {c}\n"));
    }
    undo.push_str("COMMIT\n");

    let mut said: Vec<String> = touched
        .iter()
        .map(|c| match have.chain(c) {
            Some(h) => format!("{c} ({} rules)", h.rules.len()),
            None => format!("{c} (absent)"),
        })
        .collect();
    said.extend(
        inserts
            .iter()
            .map(|i| format!("no jump from {} to {}", i.chain, target(&i.rule))),
    );
    Some(ChainsRestore {
        backend: b.backend.clone(),
        input,
        undo,
        replaces: format!("{table} ({}): {}", b.backend, said.join(", ")),
    })
}

fn target(rule: &str) -> String {
    RuleSpec::parse(rule)
        .ok()
        .and_then(|r| r.target)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::state::IptablesBackendState;

    fn node(rs: Ruleset) -> NodeState {
        let mut n = NodeState::default();
        n.iptables.push(IptablesBackendState {
            backend: "legacy".into(),
            ruleset: rs,
            raw: None,
        });
        n
    }

    fn flannel() -> Ruleset {
        let mut rs = Ruleset::default();
        let f = rs.table_mut("filter");
        f.append(
            "FORWARD",
            "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
        );
        f.append("FORWARD", "-j FLANNEL-FWD");
        f.append("FLANNEL-FWD", "-s 10.2.0.0/16 -j ACCEPT");
        f.append("FLANNEL-FWD", "-d 10.2.0.0/16 -j ACCEPT");
        f.append("KUBE-FORWARD", "-j ACCEPT");
        rs
    }

    #[test]
    fn writes_a_missing_chain_and_its_jump_in_place_and_undoes_both() {
        let want = flannel();
        let mut have = want.clone();
        have.table_mut("filter").remove_chain("FLANNEL-FWD");
        let r = restore("filter", &["FLANNEL-FWD".into()], &want, &node(have)).unwrap();
        assert_eq!(r.backend, "legacy");
        assert_eq!(
            r.input,
            "*filter\n:FLANNEL-FWD - [0:0]\n-A FLANNEL-FWD -s 10.2.0.0/16 -j ACCEPT\n-A FLANNEL-FWD -d 10.2.0.0/16 -j ACCEPT\n-I FORWARD 2 -j FLANNEL-FWD\nCOMMIT\n"
        );
        assert_eq!(
            r.undo,
            "*filter\n:FLANNEL-FWD - [0:0]\n-D FORWARD -j FLANNEL-FWD\n-X FLANNEL-FWD\nCOMMIT\n"
        );
        assert_eq!(
            r.replaces,
            "filter (legacy): FLANNEL-FWD (absent), no jump from FORWARD to FLANNEL-FWD"
        );
    }

    #[test]
    fn rewrites_a_wrong_chain_whole_and_removes_a_named_stale_one() {
        let mut want = Ruleset::default();
        let nat = want.table_mut("nat");
        nat.append("KUBE-SVC-A", "-j KUBE-SEP-NEW");
        nat.append(
            "KUBE-SEP-NEW",
            "-p tcp -j DNAT --to-destination 10.2.0.5:80",
        );
        let mut have = Ruleset::default();
        let nat = have.table_mut("nat");
        nat.append("KUBE-SVC-A", "-j KUBE-SEP-OLD");
        nat.append(
            "KUBE-SEP-OLD",
            "-p tcp -j DNAT --to-destination 10.2.0.250:80",
        );
        let chains: Vec<String> = ["KUBE-SVC-A", "KUBE-SEP-NEW", "KUBE-SEP-OLD"]
            .map(String::from)
            .to_vec();
        let r = restore("nat", &chains, &want, &node(have)).unwrap();
        assert_eq!(
            r.input,
            "*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-NEW - [0:0]\n:KUBE-SEP-OLD - [0:0]\n-A KUBE-SVC-A -j KUBE-SEP-NEW\n-A KUBE-SEP-NEW -p tcp -j DNAT --to-destination 10.2.0.5:80\n-X KUBE-SEP-OLD\nCOMMIT\n"
        );
        assert_eq!(
            r.undo,
            "*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-NEW - [0:0]\n:KUBE-SEP-OLD - [0:0]\n-A KUBE-SVC-A -j KUBE-SEP-OLD\n-A KUBE-SEP-OLD -p tcp -j DNAT --to-destination 10.2.0.250:80\n-X KUBE-SEP-NEW\nCOMMIT\n"
        );
    }

    #[test]
    fn keeps_a_stale_chain_an_unnamed_chain_still_jumps_to() {
        let want = Ruleset::default();
        let mut have = Ruleset::default();
        let nat = have.table_mut("nat");
        nat.append("OTHER", "-j KUBE-SEP-OLD");
        nat.append("KUBE-SEP-OLD", "-j ACCEPT");
        let r = restore("nat", &["KUBE-SEP-OLD".into()], &want, &node(have)).unwrap();
        assert_eq!(r.input, "*nat\nCOMMIT\n");
    }

    /// A chain named in another rule's comment is no jump to it: the
    /// stale chain goes, and a rule jumping elsewhere is not inserted.
    #[test]
    fn a_chain_named_in_a_comment_is_not_jumped_to() {
        let mut want = Ruleset::default();
        let nat = want.table_mut("nat");
        nat.append("KUBE-SVC-A", "-j KUBE-SEP-NEW");
        nat.append("KUBE-SEP-NEW", "-j ACCEPT");
        nat.append(
            "OTHER",
            "-m comment --comment \"was KUBE-SEP-NEW here\" -j RETURN",
        );
        let mut have = Ruleset::default();
        let nat = have.table_mut("nat");
        nat.append("KUBE-SVC-A", "-j KUBE-SEP-OLD");
        nat.append("KUBE-SEP-OLD", "-j ACCEPT");
        nat.append(
            "OTHER",
            "-m comment --comment \"stale KUBE-SEP-OLD here\" -j ACCEPT",
        );
        let chains: Vec<String> = ["KUBE-SVC-A", "KUBE-SEP-NEW", "KUBE-SEP-OLD"]
            .map(String::from)
            .to_vec();
        let r = restore("nat", &chains, &want, &node(have)).unwrap();
        assert!(r.input.contains("-X KUBE-SEP-OLD\n"), "{}", r.input);
        assert!(!r.input.contains("-I OTHER"), "{}", r.input);
    }

    /// One restorer for a plan's several actions: each restore as a
    /// restore of its own gives it; a goto is a jump, a `-j` inside a
    /// comment is not.
    #[test]
    fn one_restorer_for_several_actions_finds_each_jump() {
        let mut want = Ruleset::default();
        let nat = want.table_mut("nat");
        nat.append("KUBE-SERVICES", "-d 10.1.0.1/32 -p tcp -j KUBE-SVC-A");
        nat.append(
            "KUBE-SERVICES",
            "-m comment --comment \"a -j KUBE-SVC-B b\" -j RETURN",
        );
        nat.append("KUBE-SERVICES", "-d 10.1.0.2/32 -p tcp -g KUBE-SVC-B");
        nat.append("KUBE-SVC-A", "-j ACCEPT");
        nat.append("KUBE-SVC-B", "-j ACCEPT");
        let mut have = Ruleset::default();
        have.table_mut("nat").append(
            "KUBE-SERVICES",
            "-m comment --comment \"a -j KUBE-SVC-B b\" -j RETURN",
        );
        let have = node(have);
        let restorer = Restorer::new(&want, &have);
        let a = restorer.restore("nat", &["KUBE-SVC-A".into()]).unwrap();
        let b = restorer.restore("nat", &["KUBE-SVC-B".into()]).unwrap();
        assert_eq!(
            a,
            restore("nat", &["KUBE-SVC-A".into()], &want, &have).unwrap()
        );
        assert_eq!(
            b,
            restore("nat", &["KUBE-SVC-B".into()], &want, &have).unwrap()
        );
        assert!(
            a.input
                .contains("-I KUBE-SERVICES 1 -d 10.1.0.1/32 -p tcp -j KUBE-SVC-A\n"),
            "{}",
            a.input
        );
        assert!(
            b.input
                .contains("-I KUBE-SERVICES 2 -d 10.1.0.2/32 -p tcp -g KUBE-SVC-B\n"),
            "{}",
            b.input
        );
        assert_eq!(b.input.matches("-I ").count(), 1, "{}", b.input);
    }

    #[test]
    fn a_node_without_iptables_gets_no_restore() {
        assert!(restore("nat", &["X".into()], &flannel(), &NodeState::default()).is_none());
    }
}
