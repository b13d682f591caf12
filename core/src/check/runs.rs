//! A node's findings kept as sorted runs of shared findings, so that the
//! whole list is put together without sorting it again: at scale a
//! reading holds 45,000 findings, and an endpoint change alters a few of
//! one node's kube-proxy findings. A run is merged into another by
//! bisection (a few comparisons per finding of the smaller run), and the
//! nodes' runs follow one another in the order [`super::run`] sorts them
//! (by node first), when every finding of a node's runs is about that
//! node.

use std::cmp::Ordering;
use std::sync::Arc;

use super::{Finding, order, sort};

/// Findings sorted as [`super::run`] sorts them, each shared.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub sorted: Vec<Arc<Finding>>,
    /// Whether every finding is about the node the run was made for (the
    /// cluster's run: about no node), so that runs may be put one after
    /// another by node instead of sorted together.
    pub own: bool,
}

impl Run {
    /// `found`, sorted; `node`: the node they should all be about.
    pub fn of(mut found: Vec<Arc<Finding>>, node: Option<&str>) -> Run {
        sort(&mut found);
        let own = found.iter().all(|f| f.node.as_deref() == node);
        Run { sorted: found, own }
    }

    /// `first` and `second` as one run: the stable sort of `first`'s
    /// findings followed by `second`'s (an equal pair keeps that order),
    /// by bisecting the larger run at each finding of the smaller.
    pub fn merged(first: &Run, second: &Run) -> Run {
        let (a, b) = (&first.sorted, &second.sorted);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let mut at = 0;
        if a.len() <= b.len() {
            // Each of `first` goes before the equal ones of `second`.
            for x in a {
                let n = b[at..].partition_point(|y| order(y, x) == Ordering::Less);
                out.extend_from_slice(&b[at..at + n]);
                out.push(x.clone());
                at += n;
            }
            out.extend_from_slice(&b[at..]);
        } else {
            // Each of `second` goes after the equal ones of `first`.
            for y in b {
                let n = a[at..].partition_point(|x| order(x, y) != Ordering::Greater);
                out.extend_from_slice(&a[at..at + n]);
                out.push(y.clone());
                at += n;
            }
            out.extend_from_slice(&a[at..]);
        }
        Run {
            sorted: out,
            own: first.own && second.own,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FindingId, Severity};
    use proptest::prelude::*;

    fn finding(node: Option<&str>, severity: u8, summary: u8) -> Arc<Finding> {
        let severity = match severity % 3 {
            0 => Severity::Error,
            1 => Severity::Warning,
            _ => Severity::Info,
        };
        let id = [FindingId::RouteMissing, FindingId::NeighMissing][summary as usize % 2];
        Arc::new(Finding::new(
            id,
            severity,
            node,
            format!("s{}", summary % 4),
        ))
    }

    proptest! {
        /// Merging two sorted runs is the stable sort of one followed by
        /// the other, whichever is the larger; equal findings keep that
        /// order (told apart by pointer).
        #[test]
        fn merged_is_the_stable_sort_of_both(
            a in proptest::collection::vec((0u8..3, 0u8..8), 0..40),
            b in proptest::collection::vec((0u8..3, 0u8..8), 0..40),
        ) {
            let make = |v: &[(u8, u8)]| Run::of(v.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let (a, b) = (make(&a), make(&b));
            let mut expected: Vec<Arc<Finding>> = a.sorted.iter().chain(&b.sorted).cloned().collect();
            sort(&mut expected);
            let got = Run::merged(&a, &b);
            prop_assert!(got.own);
            prop_assert_eq!(got.sorted.len(), expected.len());
            for (g, e) in got.sorted.iter().zip(&expected) {
                prop_assert!(Arc::ptr_eq(g, e));
            }
        }
    }

    #[test]
    fn a_finding_about_another_node_is_no_runs_own() {
        let run = Run::of(
            vec![finding(Some("n"), 0, 0), finding(None, 0, 1)],
            Some("n"),
        );
        assert!(!run.own);
        assert!(Run::of(vec![finding(None, 1, 1)], None).own);
    }
}
