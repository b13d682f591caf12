//! Every finding of a reading as the views hold it: sorted as
//! [`super::run`] sorts them, in one shared run per node (the cluster's
//! first). The dashboard's reader hands the runs its kept verdicts hold
//! ([`super::incremental::Verdicts`]) to the snapshot as they are: at
//! scale a reading holds 45,000 findings, and copying their pointers
//! into one list, then dropping the list before, took a fifth of each
//! endpoint change's reading. A node's findings, its counts and whether
//! they changed (the run's pointer) are a bisection away.

use std::cmp::Ordering;
use std::sync::Arc;

use super::Finding;
use super::runs::{Offsets, Run, Tally};

/// Findings sorted as [`super::run`] sorts them, one run per node.
#[derive(Debug, Clone, Default)]
pub struct Findings(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Each about one node (the cluster's: about none), none empty, in
    /// the order of their nodes (the cluster first).
    runs: Vec<Run>,
    /// Where each run starts in the whole list.
    offsets: Offsets,
    tally: Tally,
}

/// The node a run's findings are about.
fn node_of(run: &Run) -> Option<&str> {
    run.first().and_then(|f| f.node.as_deref())
}

impl Findings {
    /// Runs each about one node, in their nodes' order, each node once
    /// (empty runs are left out).
    pub fn of_runs(runs: impl IntoIterator<Item = Run>) -> Findings {
        let runs: Vec<Run> = runs.into_iter().filter(|r| !r.is_empty()).collect();
        debug_assert!(runs.iter().all(|r| {
            let node = node_of(r);
            r.iter().all(|f| f.node.as_deref() == node)
        }));
        debug_assert!(runs.windows(2).all(|w| node_of(&w[0]) < node_of(&w[1])));
        let offsets = Offsets::of(runs.iter().map(Run::len));
        let tally = runs.iter().map(|r| r.tally).sum();
        Findings(Arc::new(Inner {
            runs,
            offsets,
            tally,
        }))
    }

    /// `all`, sorted as [`super::run`] sorts them, cut into runs by node.
    pub fn of_sorted(all: Vec<Arc<Finding>>) -> Findings {
        debug_assert!(all.is_sorted_by(|a, b| a.node <= b.node));
        let mut runs = Vec::new();
        let mut rest = &all[..];
        while let Some(first) = rest.first() {
            let node = first.node.as_deref();
            let (run, after) = rest.split_at(rest.partition_point(|f| f.node.as_deref() <= node));
            runs.push(Run::of_sorted(run.to_vec(), true, Tally::of(run)));
            rest = after;
        }
        Findings::of_runs(runs)
    }

    pub fn len(&self) -> usize {
        self.0.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every finding, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Finding>> + Clone {
        self.0.runs.iter().flat_map(|r| r.iter())
    }

    /// The `i`th finding.
    pub fn get(&self, i: usize) -> Option<&Arc<Finding>> {
        let (run, at) = self.0.offsets.locate(i)?;
        self.0.runs[run].get(at)
    }

    /// All of them counted.
    pub fn tally(&self) -> Tally {
        self.0.tally
    }

    /// The run of `node`'s findings (`None`: the cluster's).
    pub fn run(&self, node: Option<&str>) -> Option<&Run> {
        let runs = &self.0.runs;
        let i = runs.partition_point(|r| node_of(r).cmp(&node) == Ordering::Less);
        runs.get(i).filter(|r| node_of(r) == node)
    }

    /// `node`'s findings (`None`: the cluster's), sorted, piece by piece
    /// ([`Run::slices`]).
    pub fn slices_of(&self, node: Option<&str>) -> impl Iterator<Item = &[Arc<Finding>]> + Clone {
        self.run(node).into_iter().flat_map(|r| r.slices())
    }

    /// `node`'s findings (`None`: the cluster's), sorted.
    pub fn of(&self, node: Option<&str>) -> impl Iterator<Item = &Arc<Finding>> + Clone {
        self.run(node).into_iter().flat_map(|r| r.iter())
    }

    /// The runs, node by node: `(node, findings)`.
    pub fn runs(&self) -> impl Iterator<Item = (Option<&str>, &Run)> {
        self.0.runs.iter().map(|r| (node_of(r), r))
    }

    /// Whether `node`'s findings are the very run `other` holds for it
    /// (pointers compared, no finding read), or both have none.
    pub fn same_run(&self, other: &Findings, node: Option<&str>) -> bool {
        match (self.run(node), other.run(node)) {
            (Some(a), Some(b)) => a.same(b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Every finding, in one list (for what reads them as a slice).
    pub fn to_vec(&self) -> Vec<Arc<Finding>> {
        self.iter().cloned().collect()
    }
}

impl From<Vec<Arc<Finding>>> for Findings {
    fn from(all: Vec<Arc<Finding>>) -> Findings {
        Findings::of_sorted(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FindingId, Severity};

    fn finding(node: Option<&str>, severity: Severity, summary: &str) -> Arc<Finding> {
        Arc::new(Finding::new(
            FindingId::RouteMissing,
            severity,
            node,
            summary.to_string(),
        ))
    }

    #[test]
    fn a_sorted_list_cut_by_node_reads_back_whole() {
        let all = vec![
            finding(None, Severity::Error, "c"),
            finding(Some("a"), Severity::Error, "a1"),
            finding(Some("a"), Severity::Warning, "a2"),
            finding(Some("b"), Severity::Info, "b1"),
        ];
        let f = Findings::of_sorted(all.clone());
        assert_eq!(f.len(), 4);
        assert!(f.iter().zip(&all).all(|(x, y)| Arc::ptr_eq(x, y)));
        for (i, want) in all.iter().enumerate() {
            assert!(Arc::ptr_eq(f.get(i).unwrap(), want), "{i}");
        }
        assert!(f.get(4).is_none());
        assert_eq!(f.of(None).count(), 1);
        assert_eq!(f.of(Some("a")).count(), 2);
        assert_eq!(f.of(Some("b")).count(), 1);
        assert_eq!(f.of(Some("c")).count(), 0);
        assert_eq!(f.tally().errors(), 2);
        assert_eq!(f.tally().total(), 4);
        let nodes: Vec<_> = f.runs().map(|(n, _)| n).collect();
        assert_eq!(nodes, [None, Some("a"), Some("b")]);
        // A copy of the handle holds the same runs; a list built again
        // from the same findings holds runs of its own.
        assert!(f.same_run(&f.clone(), Some("a")));
        assert!(!f.same_run(&Findings::of_sorted(all), Some("a")));
        assert!(f.same_run(&Findings::default(), Some("zz")));
    }

    #[test]
    fn none_at_all() {
        let f = Findings::of_sorted(Vec::new());
        assert!(f.is_empty() && f.get(0).is_none() && f.of(None).next().is_none());
        assert_eq!(f.tally(), Tally::default());
    }
}
