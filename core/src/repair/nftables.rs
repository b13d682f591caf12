//! Writing an nftables table whole (pure): the `nft -j -f` input that makes
//! kube-proxy's (or flannel's) table what its owner writes for the cluster's objects, in
//! one transaction (delete and write anew, as kube-proxy's own first sync
//! does), and the input that puts back the table the node holds now.

use serde::{Deserialize, Serialize};

use crate::dataplane::NodeState;
use crate::dataplane::nft_table::{NftTableSpec, TableDiff};

/// How one table action is carried out and undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRestore {
    /// The `nft -j -f -` input that writes the table.
    pub input: String,
    /// The input that puts back what the node has now (deleting the table
    /// when it had none).
    pub undo: String,
    /// What it replaces, as a person reads it.
    pub replaces: String,
}

/// The restore that makes the table `expected` names on `node` `expected`.
pub fn restore(expected: &NftTableSpec, node: &NodeState) -> TableRestore {
    let (undo, replaces) = match node.nft_table(&expected.family, &expected.name) {
        Some(have) => {
            let diffs = expected.diff(have);
            let shown: Vec<String> = diffs.iter().take(4).map(TableDiff::to_string).collect();
            (
                have.replace_commands(),
                format!(
                    "table {} {} as the node has it ({} difference(s){}{})",
                    expected.family,
                    expected.name,
                    diffs.len(),
                    if shown.is_empty() { "" } else { ": " },
                    shown.join("; ")
                ),
            )
        }
        None => (
            NftTableSpec::delete_commands(&expected.family, &expected.name),
            format!("no table {} {}", expected.family, expected.name),
        ),
    };
    TableRestore {
        input: expected.replace_commands(),
        undo,
        replaces,
    }
}
