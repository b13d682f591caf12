//! A node's findings kept as sorted runs of shared findings, so that the
//! whole list is put together without sorting it again: at scale a
//! reading holds 45,000 findings, and an endpoint change alters a few of
//! one node's kube-proxy findings. A run is merged into another by
//! bisection (a few comparisons per finding of the smaller run), and the
//! nodes' runs follow one another in the order [`super::run`] sorts them
//! (by node first), when every finding of a node's runs is about that
//! node ([`super::findings::Findings`] holds them so, unmerged).

use std::cmp::Ordering;
use std::sync::Arc;

use super::{Finding, Severity, order, sort};

/// Findings counted as the overview shows them: flannel's and the node's
/// apart from kube-proxy's, each by severity. A run carries its count,
/// so that a snapshot's counts are sums of its runs' (a read node's
/// 15,000 findings, each in an allocation of its own, are not read
/// again for a count while its run stays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// About flannel, the node or the cluster: errors, warnings, infos.
    pub node: [usize; 3],
    /// About kube-proxy's rules ([`super::FindingId::is_kube_proxy`]).
    pub proxy: [usize; 3],
}

impl Tally {
    pub fn of<'a>(findings: impl IntoIterator<Item = &'a Arc<Finding>>) -> Tally {
        let mut t = Tally::default();
        for f in findings {
            let counts = match f.id.is_kube_proxy() {
                true => &mut t.proxy,
                false => &mut t.node,
            };
            counts[Tally::index(f.severity)] += 1;
        }
        t
    }

    /// The index of `s` in [`Tally::node`] and [`Tally::proxy`].
    pub fn index(s: Severity) -> usize {
        match s {
            Severity::Error => 0,
            Severity::Warning => 1,
            Severity::Info => 2,
        }
    }

    pub fn errors(&self) -> usize {
        self.node[0] + self.proxy[0]
    }

    pub fn total(&self) -> usize {
        self.node.iter().chain(&self.proxy).sum()
    }

    /// `self` without `part` (which it counted).
    pub fn without(self, part: Tally) -> Tally {
        let less =
            |a: [usize; 3], b: [usize; 3]| std::array::from_fn(|i| a[i].saturating_sub(b[i]));
        Tally {
            node: less(self.node, part.node),
            proxy: less(self.proxy, part.proxy),
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Tally;

    fn add(self, other: Tally) -> Tally {
        let sum = |a: [usize; 3], b: [usize; 3]| std::array::from_fn(|i| a[i] + b[i]);
        Tally {
            node: sum(self.node, other.node),
            proxy: sum(self.proxy, other.proxy),
        }
    }
}

impl std::iter::Sum for Tally {
    fn sum<I: Iterator<Item = Tally>>(iter: I) -> Tally {
        iter.fold(Tally::default(), std::ops::Add::add)
    }
}

/// Findings sorted as [`super::run`] sorts them, each shared, and the
/// run itself shared: the snapshot after a change holds the runs of the
/// nodes it did not touch as they were, pointers and all.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub sorted: Arc<[Arc<Finding>]>,
    /// Whether every finding is about the node the run was made for (the
    /// cluster's run: about no node), so that runs may be put one after
    /// another by node instead of sorted together.
    pub own: bool,
    /// Its findings counted.
    pub tally: Tally,
}

impl Run {
    /// `found`, sorted; `node`: the node they should all be about.
    pub fn of(mut found: Vec<Arc<Finding>>, node: Option<&str>) -> Run {
        sort(&mut found);
        let own = found.iter().all(|f| f.node.as_deref() == node);
        Run {
            tally: Tally::of(&found),
            sorted: found.into(),
            own,
        }
    }

    /// `sorted` (already sorted), counted as `tally` says.
    pub fn of_sorted(sorted: Vec<Arc<Finding>>, own: bool, tally: Tally) -> Run {
        debug_assert!(sorted.is_sorted_by(|a, b| order(a, b) != Ordering::Greater));
        debug_assert_eq!(tally, Tally::of(&sorted));
        Run {
            sorted: sorted.into(),
            own,
            tally,
        }
    }

    /// `first` and `second` as one run: the stable sort of `first`'s
    /// findings followed by `second`'s (an equal pair keeps that order),
    /// by bisecting the larger run at each finding of the smaller. An
    /// empty side gives the other run itself, shared.
    pub fn merged(first: &Run, second: &Run) -> Run {
        let (a, b) = (&first.sorted, &second.sorted);
        let own = first.own && second.own;
        if a.is_empty() || b.is_empty() {
            let whole = if a.is_empty() { second } else { first };
            return Run {
                own,
                ..whole.clone()
            };
        }
        let mut out = Vec::with_capacity(a.len() + b.len());
        let mut at = 0;
        if a.len() <= b.len() {
            // Each of `first` goes before the equal ones of `second`.
            for x in a.iter() {
                let n = b[at..].partition_point(|y| order(y, x) == Ordering::Less);
                out.extend_from_slice(&b[at..at + n]);
                out.push(x.clone());
                at += n;
            }
            out.extend_from_slice(&b[at..]);
        } else {
            // Each of `second` goes after the equal ones of `first`.
            for y in b.iter() {
                let n = a[at..].partition_point(|x| order(x, y) != Ordering::Greater);
                out.extend_from_slice(&a[at..at + n]);
                out.push(y.clone());
                at += n;
            }
            out.extend_from_slice(&a[at..]);
        }
        Run {
            sorted: out.into(),
            own,
            tally: first.tally + second.tally,
        }
    }
}

/// The kube-proxy and IPVS findings ([`super::FindingId::is_kube_proxy`])
/// of `sorted`, in its order: the filter's result, found by bisection.
/// Findings sort by node, severity and ID, so one node's findings of one
/// ID and severity stand together, and two bisections per kube-proxy ID
/// and severity (90, of 14 steps each) find them all. At scale a read
/// node holds 15,000 findings, nearly all flannel's (its 5,000 peers),
/// and its kube-proxy findings — a few hundred while endpoints change —
/// were picked out by reading every one on each endpoint change. Findings
/// of more than one node are filtered.
pub fn kube_proxy_of(sorted: &[Arc<Finding>]) -> Vec<&Arc<Finding>> {
    static IDS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut ids: Vec<&str> = (super::FindingId::ALL.iter())
            .filter(|id| id.is_kube_proxy())
            .map(|id| id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    });
    let one_node = sorted.first().map(|f| &f.node) == sorted.last().map(|f| &f.node);
    if !one_node {
        return sorted.iter().filter(|f| f.id.is_kube_proxy()).collect();
    }
    let mut out = Vec::new();
    let mut from = 0;
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        for id in IDS.iter().copied() {
            let rest = &sorted[from..];
            let key = |f: &Arc<Finding>| (f.severity, f.id.as_str()).cmp(&(severity, id));
            let start = rest.partition_point(|f| key(f) == Ordering::Less);
            let len = rest[start..].partition_point(|f| key(f) == Ordering::Equal);
            out.extend(&rest[start..start + len]);
            from += start + len;
        }
    }
    out
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
            let mut expected: Vec<Arc<Finding>> = a.sorted.iter().chain(b.sorted.iter()).cloned().collect();
            sort(&mut expected);
            let got = Run::merged(&a, &b);
            prop_assert!(got.own);
            prop_assert_eq!(got.tally, Tally::of(got.sorted.iter()));
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
            let kept = Run { tally: Tally::of(&kept), sorted: kept.into(), own: true };
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
            for n in new.sorted.iter() {
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

    proptest! {
        /// Picked by bisection, a run's kube-proxy findings are the
        /// filter's, pointer for pointer and in order, whatever IDs,
        /// severities and nodes it holds.
        #[test]
        fn kube_proxy_of_is_the_filter(
            found in proptest::collection::vec((0u8..3, 0usize..usize::MAX, 0u8..4, any::<bool>()), 0..60),
            other_node in any::<bool>(),
        ) {
            let ids = FindingId::ALL;
            let all: Vec<Arc<Finding>> = found.iter().enumerate().map(|(i, &(s, id, m, proxy))| {
                let pick: Vec<&FindingId> = ids.iter().filter(|i| i.is_kube_proxy() == proxy).collect();
                let node = if other_node && i == 0 { "m" } else { "n" };
                let mut f = (*finding(Some(node), s, m)).clone();
                f.id = *pick[id % pick.len()];
                Arc::new(f)
            }).collect();
            let run = Run::of(all, Some("n"));
            let want: Vec<&Arc<Finding>> = run.sorted.iter().filter(|f| f.id.is_kube_proxy()).collect();
            let got = kube_proxy_of(&run.sorted);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(Arc::ptr_eq(g, w));
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
