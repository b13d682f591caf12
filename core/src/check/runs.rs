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

/// What changed between two runs of findings ([`differing`]).
#[derive(Debug, Default)]
pub struct Differing<'a> {
    /// Those of the first run not in the second.
    pub went: Vec<&'a Arc<Finding>>,
    /// Those of the second not in the first.
    pub came: Vec<&'a Arc<Finding>>,
}

impl<'a> Differing<'a> {
    pub fn is_empty(&self) -> bool {
        self.went.is_empty() && self.came.is_empty()
    }

    /// Those that went, then those that came.
    pub fn all(&self) -> impl Iterator<Item = &'a Arc<Finding>> + '_ {
        self.went.iter().chain(&self.came).copied()
    }
}

/// The findings of `old` that are not in `new` and those of `new` that are
/// not in `old`, both sorted as [`super::run`] sorts them (one node's run
/// of a snapshot and the next's). They are walked side by side, told
/// apart by pointer: only where they differ are findings read, not the
/// 15,000 of a read node at scale that a change leaves as they were. A
/// finding judged again alike is the same finding; findings that sort
/// equal but stand in another order count on both sides (more than
/// changed, never less).
pub fn differing<'a>(old: &'a [Arc<Finding>], new: &'a [Arc<Finding>]) -> Differing<'a> {
    let (mut i, mut j) = (0, 0);
    let mut out = Differing::default();
    while i < old.len() && j < new.len() {
        let (a, b) = (&old[i], &new[j]);
        if Arc::ptr_eq(a, b) {
            i += 1;
            j += 1;
            continue;
        }
        match order(a, b) {
            Ordering::Less => {
                out.went.push(a);
                i += 1;
            }
            Ordering::Greater => {
                out.came.push(b);
                j += 1;
            }
            Ordering::Equal => {
                if a != b {
                    out.went.push(a);
                    out.came.push(b);
                }
                i += 1;
                j += 1;
            }
        }
    }
    out.went.extend(&old[i..]);
    out.came.extend(&new[j..]);
    out
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

    proptest! {
        /// Between a run and the run after findings went and came, every
        /// one gone or come is found (or one alike); with no two sorting
        /// equal, those alone (a finding kept is never read as changed).
        #[test]
        fn differing_finds_what_went_and_came(
            base in proptest::collection::vec((0u8..3, 0u8..8), 0..40),
            gone in proptest::collection::vec(any::<bool>(), 40),
            came in proptest::collection::vec((0u8..3, 0u8..8), 0..10),
        ) {
            let old = Run::of(base.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let kept: Vec<Arc<Finding>> = old.sorted.iter().zip(&gone).filter(|(_, g)| !**g).map(|(f, _)| f.clone()).collect();
            let kept = Run { sorted: kept, own: true };
            let added = Run::of(came.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let new = Run::merged(&kept, &added);
            let d = differing(&old.sorted, &new.sorted);
            for f in &d.went {
                prop_assert!(old.sorted.iter().any(|o| Arc::ptr_eq(o, f)));
            }
            for f in &d.came {
                prop_assert!(new.sorted.iter().any(|n| Arc::ptr_eq(n, f)));
            }
            // What went and came, findings alike standing for each other
            // (one gone and one alike come is no change).
            let mut went: Vec<&Arc<Finding>> = old.sorted.iter().collect();
            let mut came = Vec::new();
            for n in &new.sorted {
                match went.iter().position(|o| *o == n) {
                    Some(i) => { went.remove(i); }
                    None => came.push(n),
                }
            }
            for w in &went {
                prop_assert!(d.went.iter().any(|f| f == w));
            }
            for c in &came {
                prop_assert!(d.came.iter().any(|f| f == c));
            }
            let ties = new.sorted.windows(2).chain(old.sorted.windows(2)).any(|w| order(&w[0], &w[1]) == Ordering::Equal)
                || old.sorted.iter().any(|o| added.sorted.iter().any(|a| order(o, a) == Ordering::Equal));
            if !ties {
                prop_assert_eq!((d.went.len(), d.came.len()), (went.len(), came.len()));
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
