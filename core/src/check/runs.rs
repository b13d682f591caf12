//! A node's findings kept as sorted runs of shared findings, so that the
//! whole list is put together without sorting it again: at scale a
//! reading holds 45,000 findings, and an endpoint change alters a few of
//! one node's kube-proxy findings. A run is merged into another by
//! bisection (a few comparisons per finding of the smaller run) and cut
//! from their lists, not copied ([`Run`]), and the nodes' runs follow one
//! another in the order [`super::run`] sorts them (by node first), when
//! every finding of a node's runs is about that node
//! ([`super::findings::Findings`] holds them so, unmerged).

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

/// Where each of consecutive parts (a run's pieces, [`super::Findings`]'
/// runs) starts in the whole, so that the whole's `i`th item is a
/// bisection away: one index for both, each part none empty.
#[derive(Debug, Clone, Default)]
pub(super) struct Offsets {
    starts: Vec<usize>,
    len: usize,
}

impl Offsets {
    /// The parts of these lengths, in order.
    pub(super) fn of(lens: impl ExactSizeIterator<Item = usize>) -> Offsets {
        let mut starts = Vec::with_capacity(lens.len());
        let mut len = 0;
        for n in lens {
            starts.push(len);
            len += n;
        }
        Offsets { starts, len }
    }

    /// How many items in all.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Where part `part` starts.
    pub(super) fn start(&self, part: usize) -> usize {
        self.starts[part]
    }

    /// The part holding item `i` (past the end: the last part; none: 0).
    pub(super) fn part_of(&self, i: usize) -> usize {
        self.starts.partition_point(|s| *s <= i).saturating_sub(1)
    }

    /// (the part holding item `i`, its index there); `None` past the end.
    pub(super) fn locate(&self, i: usize) -> Option<(usize, usize)> {
        (i < self.len).then(|| {
            let part = self.part_of(i);
            (part, i - self.starts[part])
        })
    }
}

/// Findings sorted as [`super::run`] sorts them, each shared, and the
/// run itself shared: the snapshot after a change holds the runs of the
/// nodes it did not touch as they were, pointers and all.
///
/// A run is held as pieces of sorted lists, so that merging a few
/// findings into many cuts the many into pieces instead of copying them:
/// at scale a read node's run is its 15,000 flannel findings (5,000
/// peers) with a few hundred of kube-proxy's merged in, merged again on
/// every endpoint change. Copying the 15,000 pointers wrote a reference
/// count in each finding's allocation, and dropping the run before wrote
/// them again: 90,000 scattered writes per reading of three lab nodes.
#[derive(Debug, Clone, Default)]
pub struct Run {
    body: Arc<Body>,
    /// Whether every finding is about the node the run was made for (the
    /// cluster's run: about no node), so that runs may be put one after
    /// another by node instead of sorted together.
    pub own: bool,
    /// Its findings counted.
    pub tally: Tally,
}

#[derive(Debug, Default)]
struct Body {
    /// The lists the pieces are cut from.
    lists: Vec<Arc<[Arc<Finding>]>>,
    /// The pieces in order, none empty.
    pieces: Vec<Piece>,
    /// Where each piece starts in the run.
    offsets: Offsets,
}

/// `lists[list][start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    list: usize,
    start: usize,
    end: usize,
}

impl Body {
    fn slice(&self, p: &Piece) -> &[Arc<Finding>] {
        &self.lists[p.list][p.start..p.end]
    }
}

/// A run being put together from pieces of other runs' lists.
#[derive(Default)]
struct Pieces {
    lists: Vec<Arc<[Arc<Finding>]>>,
    pieces: Vec<Piece>,
}

impl Pieces {
    /// `run`'s findings `from..to` after those pushed so far: its pieces
    /// there, each joined to the last one when they are one stretch of
    /// one list. `lists_at`: where `run`'s lists are in `self.lists`.
    fn push(&mut self, run: &Run, lists_at: usize, from: usize, to: usize) {
        let body = &run.body;
        if from >= to {
            return;
        }
        let first = body.offsets.part_of(from);
        for (i, p) in body.pieces.iter().enumerate().skip(first) {
            let at = body.offsets.start(i);
            if at >= to {
                break;
            }
            let start = p.start + from.saturating_sub(at);
            let end = p.end.min(p.start + (to - at));
            let list = lists_at + p.list;
            match self.pieces.last_mut() {
                Some(last) if last.list == list && last.end == start => last.end = end,
                _ => self.pieces.push(Piece { list, start, end }),
            }
        }
    }

    /// The run of these pieces, the lists no piece is cut from left out.
    fn run(self, own: bool, tally: Tally) -> Run {
        let mut used = vec![usize::MAX; self.lists.len()];
        let mut lists = Vec::new();
        let mut pieces = self.pieces;
        for p in &mut pieces {
            if used[p.list] == usize::MAX {
                used[p.list] = lists.len();
                lists.push(self.lists[p.list].clone());
            }
            p.list = used[p.list];
        }
        let offsets = Offsets::of(pieces.iter().map(|p| p.end - p.start));
        Run {
            body: Arc::new(Body {
                lists,
                pieces,
                offsets,
            }),
            own,
            tally,
        }
    }
}

impl Run {
    /// `found`, sorted; `node`: the node they should all be about.
    pub fn of(mut found: Vec<Arc<Finding>>, node: Option<&str>) -> Run {
        sort(&mut found);
        let own = found.iter().all(|f| f.node.as_deref() == node);
        let tally = Tally::of(&found);
        Run::of_sorted(found, own, tally)
    }

    /// `sorted` (already sorted), counted as `tally` says.
    pub fn of_sorted(sorted: Vec<Arc<Finding>>, own: bool, tally: Tally) -> Run {
        debug_assert!(sorted.is_sorted_by(|a, b| order(a, b) != Ordering::Greater));
        debug_assert_eq!(tally, Tally::of(&sorted));
        let end = sorted.len();
        let pieces = Pieces {
            lists: vec![sorted.into()],
            pieces: Vec::from_iter((end > 0).then_some(Piece {
                list: 0,
                start: 0,
                end,
            })),
        };
        pieces.run(own, tally)
    }

    pub fn len(&self) -> usize {
        self.body.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its findings in order, piece by piece.
    pub fn slices(&self) -> impl Iterator<Item = &[Arc<Finding>]> + Clone {
        self.body.pieces.iter().map(|p| self.body.slice(p))
    }

    /// Its findings in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Finding>> + Clone {
        self.slices().flatten()
    }

    /// The `i`th finding.
    pub fn get(&self, i: usize) -> Option<&Arc<Finding>> {
        let b = &self.body;
        let (p, at) = b.offsets.locate(i)?;
        b.slice(&b.pieces[p]).get(at)
    }

    pub fn first(&self) -> Option<&Arc<Finding>> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&Arc<Finding>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The index of the first finding for which `pred` is false (`pred`
    /// true of a prefix, false of the rest), as `slice::partition_point`:
    /// a bisection over the pieces' last findings, then within one.
    pub fn partition_point(&self, pred: impl Fn(&Arc<Finding>) -> bool) -> usize {
        let b = &self.body;
        let p = (b.pieces).partition_point(|p| pred(&b.lists[p.list][p.end - 1]));
        match b.pieces.get(p) {
            Some(piece) => b.offsets.start(p) + b.slice(piece).partition_point(pred),
            None => b.offsets.len(),
        }
    }

    /// Findings `from..to`, in order.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &Arc<Finding>> {
        let b = &self.body;
        let first = b.offsets.part_of(from);
        let pieces = b.pieces.iter().enumerate().skip(first);
        pieces
            .map_while(move |(i, p)| {
                let at = b.offsets.start(i);
                let s = (at < to).then(|| b.slice(p))?;
                let lo = from.saturating_sub(at).min(s.len());
                Some(&s[lo..(to - at).min(s.len()).max(lo)])
            })
            .flatten()
    }

    /// Whether `other` is this very run (kept, not made again).
    pub fn same(&self, other: &Run) -> bool {
        Arc::ptr_eq(&self.body, &other.body)
    }

    /// `first` and `second` as one run: the stable sort of `first`'s
    /// findings followed by `second`'s (an equal pair keeps that order),
    /// by bisecting the larger run at each finding of the smaller, and
    /// cut from their lists: no finding copied. An empty side gives the
    /// other run itself, shared.
    pub fn merged(first: &Run, second: &Run) -> Run {
        let own = first.own && second.own;
        if first.is_empty() || second.is_empty() {
            let whole = if first.is_empty() { second } else { first };
            return Run {
                own,
                ..whole.clone()
            };
        }
        let mut out = Pieces::default();
        out.lists.extend(first.body.lists.iter().cloned());
        out.lists.extend(second.body.lists.iter().cloned());
        let (a_at, b_at) = (0, first.body.lists.len());
        let mut at = 0;
        if first.len() <= second.len() {
            // Each of `first` goes before the equal ones of `second`.
            for (i, x) in first.iter().enumerate() {
                let n = second.partition_point(|y| order(y, x) == Ordering::Less);
                out.push(second, b_at, at, n);
                out.push(first, a_at, i, i + 1);
                at = at.max(n);
            }
            out.push(second, b_at, at, second.len());
        } else {
            // Each of `second` goes after the equal ones of `first`.
            for (i, y) in second.iter().enumerate() {
                let n = first.partition_point(|x| order(x, y) != Ordering::Greater);
                out.push(first, a_at, at, n);
                out.push(second, b_at, i, i + 1);
                at = at.max(n);
            }
            out.push(first, a_at, at, first.len());
        }
        out.run(own, first.tally + second.tally)
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
pub fn kube_proxy_of(sorted: &Run) -> Vec<&Arc<Finding>> {
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
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        for id in IDS.iter().copied() {
            let key = |f: &Arc<Finding>| (f.severity, f.id.as_str()).cmp(&(severity, id));
            let start = sorted.partition_point(|f| key(f) == Ordering::Less);
            let end = sorted.partition_point(|f| key(f) != Ordering::Greater);
            out.extend(sorted.range(start, end));
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
/// of a snapshot and the next's, each as its pieces: [`Run::slices`]).
/// They are walked side by side, told apart by pointer: only where they
/// differ are findings read, not the 15,000 of a read node at scale that
/// a change leaves as they were — and where both runs are cut from the
/// same stretch of one list, the stretch is passed over whole. A finding
/// judged again alike is the same finding; findings that sort equal but
/// stand in another order count on both sides (more than changed, never
/// less).
pub fn differing<'a>(
    old: impl Iterator<Item = &'a [Arc<Finding>]>,
    new: impl Iterator<Item = &'a [Arc<Finding>]>,
) -> Differing<'a> {
    let (mut old, mut new) = (old.fuse(), new.fuse());
    let (mut a, mut b): (&[Arc<Finding>], &[Arc<Finding>]) = (&[], &[]);
    let mut out = Differing::default();
    loop {
        if a.is_empty() {
            match old.next() {
                Some(s) => a = s,
                None => break,
            }
            continue;
        }
        if b.is_empty() {
            match new.next() {
                Some(s) => b = s,
                None => break,
            }
            continue;
        }
        // The same stretch of the same list: the same findings.
        if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
            let n = a.len().min(b.len());
            (a, b) = (&a[n..], &b[n..]);
            continue;
        }
        let (x, y) = (&a[0], &b[0]);
        if Arc::ptr_eq(x, y) {
            (a, b) = (&a[1..], &b[1..]);
            continue;
        }
        match order(x, y) {
            Ordering::Less => {
                out.went.push(x);
                a = &a[1..];
            }
            Ordering::Greater => {
                out.came.push(y);
                b = &b[1..];
            }
            Ordering::Equal => {
                if x != y {
                    out.went.push(x);
                    out.came.push(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
    out.went.extend(a.iter().chain(old.flatten()));
    out.came.extend(b.iter().chain(new.flatten()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FindingId, Severity};
    use proptest::prelude::*;

    #[test]
    fn offsets_locate_each_item_in_its_part() {
        let o = Offsets::of([3, 1, 2].into_iter());
        let found: Vec<_> = (0..7).map(|i| o.locate(i)).collect();
        let want = [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)].map(Some);
        assert_eq!(found[..6], want[..]);
        assert_eq!(
            (found[6], o.len(), o.part_of(9), o.start(2)),
            (None, 6, 2, 4)
        );
        let none = Offsets::of(std::iter::empty());
        assert_eq!((none.locate(0), none.part_of(0), none.len()), (None, 0, 0));
    }

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
            let mut expected: Vec<Arc<Finding>> = a.iter().chain(b.iter()).cloned().collect();
            sort(&mut expected);
            let got = Run::merged(&a, &b);
            prop_assert!(got.own);
            prop_assert_eq!(got.tally, Tally::of(got.iter()));
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!(Arc::ptr_eq(g, e));
            }
        }
    }

    proptest! {
        /// Runs merged from merged runs (pieces of several lists) read as
        /// the stable sort of all their findings: in order, by index, by
        /// bisection and by range, as a list of them would.
        #[test]
        fn merged_runs_read_as_one_list(
            a in proptest::collection::vec((0u8..3, 0u8..8), 0..30),
            b in proptest::collection::vec((0u8..3, 0u8..8), 0..30),
            c in proptest::collection::vec((0u8..3, 0u8..8), 0..30),
            cut in (0usize..100, 0usize..100),
            key in (0u8..3, 0u8..8),
        ) {
            let make = |v: &[(u8, u8)]| Run::of(v.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let (a, b, c) = (make(&a), make(&b), make(&c));
            let ab = Run::merged(&a, &b);
            for (got, parts) in [
                (Run::merged(&ab, &c), [&a, &b, &c]),
                (Run::merged(&c, &ab), [&c, &a, &b]),
            ] {
                // The stable sort of the parts one after another.
                let mut want: Vec<Arc<Finding>> = parts.iter().flat_map(|r| r.iter()).cloned().collect();
                sort(&mut want);
                // Read back whole: as many, in order, each once.
                let all: Vec<Arc<Finding>> = got.iter().cloned().collect();
                prop_assert_eq!(all.len(), want.len());
                prop_assert_eq!(got.len(), want.len());
                for (g, w) in all.iter().zip(&want) {
                    prop_assert!(Arc::ptr_eq(g, w));
                }
                prop_assert_eq!(got.tally, Tally::of(&all));
                for (i, f) in all.iter().enumerate() {
                    prop_assert!(Arc::ptr_eq(got.get(i).unwrap(), f));
                }
                prop_assert!(got.get(all.len()).is_none());
                let k = finding(Some("n"), key.0, key.1);
                let pred = |f: &Arc<Finding>| order(f, &k) == Ordering::Less;
                prop_assert_eq!(got.partition_point(pred), all.partition_point(pred));
                let (from, to) = (cut.0.min(all.len()), cut.1.min(all.len()));
                let range: Vec<&Arc<Finding>> = got.range(from, to).collect();
                let want_range: Vec<&Arc<Finding>> = all[from..to.max(from)].iter().collect();
                prop_assert_eq!(range.len(), want_range.len());
                for (x, y) in range.iter().zip(&want_range) {
                    prop_assert!(Arc::ptr_eq(x, y));
                }
            }
        }
    }

    /// Whether two distinct findings of `old` and `new` sort equal.
    fn ties(old: &Run, new: &Run) -> bool {
        let both: Vec<&Arc<Finding>> = old.iter().chain(new.iter()).collect();
        both.iter()
            .any(|x| (both.iter()).any(|y| !Arc::ptr_eq(x, y) && order(x, y) == Ordering::Equal))
    }

    /// [`differing`] between `old` and `new` finds every finding gone or
    /// come (or one alike); with no two distinct findings sorting equal,
    /// those alone (a finding kept is never read as changed).
    fn differing_is_right(old: &Run, new: &Run) -> Result<(), TestCaseError> {
        let d = differing(old.slices(), new.slices());
        for f in &d.went {
            prop_assert!(old.iter().any(|o| Arc::ptr_eq(o, f)));
        }
        for f in &d.came {
            prop_assert!(new.iter().any(|n| Arc::ptr_eq(n, f)));
        }
        // What went and came, findings alike standing for each other
        // (one gone and one alike come is no change).
        let mut went: Vec<&Arc<Finding>> = old.iter().collect();
        let mut came = Vec::new();
        for n in new.iter() {
            match went.iter().position(|o| *o == n) {
                Some(i) => {
                    went.remove(i);
                }
                None => came.push(n),
            }
        }
        for w in &went {
            prop_assert!(d.went.iter().any(|f| f == w));
        }
        for c in &came {
            prop_assert!(d.came.iter().any(|f| f == c));
        }
        if !ties(old, new) {
            prop_assert_eq!((d.went.len(), d.came.len()), (went.len(), came.len()));
        }
        Ok(())
    }

    proptest! {
        /// Between a run and the run after findings went and came.
        #[test]
        fn differing_finds_what_went_and_came(
            base in proptest::collection::vec((0u8..3, 0u8..8), 0..40),
            gone in proptest::collection::vec(any::<bool>(), 40),
            came in proptest::collection::vec((0u8..3, 0u8..8), 0..10),
        ) {
            let old = Run::of(base.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let kept: Vec<Arc<Finding>> = old.iter().zip(&gone).filter(|(_, g)| !**g).map(|(f, _)| f.clone()).collect();
            let tally = Tally::of(&kept);
            let kept = Run::of_sorted(kept, true, tally);
            let added = Run::of(came.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            differing_is_right(&old, &Run::merged(&kept, &added))?;
        }

        /// Between two runs cut from one list with different findings
        /// merged in (a node's flannel findings, kube-proxy's before and
        /// after an endpoint change): the shared stretches are passed over.
        #[test]
        fn differing_passes_over_what_two_runs_share(
            base in proptest::collection::vec((0u8..3, 0u8..8), 0..40),
            before in proptest::collection::vec((0u8..3, 0u8..8), 0..10),
            after in proptest::collection::vec((0u8..3, 0u8..8), 0..10),
        ) {
            let make = |v: &[(u8, u8)]| Run::of(v.iter().map(|&(s, m)| finding(Some("n"), s, m)).collect(), Some("n"));
            let base = make(&base);
            let (old, new) = (Run::merged(&make(&before), &base), Run::merged(&make(&after), &base));
            differing_is_right(&old, &new)?;
            differing_is_right(&new, &old)?;
            let d = differing(old.slices(), new.slices());
            if !ties(&old, &new) {
                prop_assert!(d.all().all(|f| !base.iter().any(|b| Arc::ptr_eq(b, f))), "a shared finding read as changed");
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
            // Two runs merged: a run of pieces, as the verdicts make them.
            let (odd, even): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
            let half = |v: Vec<(usize, Arc<Finding>)>| Run::of(v.into_iter().map(|(_, f)| f).collect(), Some("n"));
            let run = Run::merged(&half(odd), &half(even));
            let want: Vec<&Arc<Finding>> = run.iter().filter(|f| f.id.is_kube_proxy()).collect();
            let got = kube_proxy_of(&run);
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
