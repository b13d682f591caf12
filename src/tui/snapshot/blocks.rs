//! A node's lines in shared blocks, the blocks in shared chunks: what a
//! change of findings marks again is a few blocks, and what it copies is
//! a few chunks' pointers, not one pointer per block.

use std::sync::Arc;

use super::Entry;

/// Blocks per chunk. kube-proxy's iptables tree is 10,000 blocks (one per
/// Service) on each read node: an endpoint change re-marked one of them
/// and copied the other 9,999 pointers, each copy a reference count
/// written in a block of its own, then the same again when the snapshot
/// before was dropped — a tenth of each watch event's reading at scale
/// (`benches/tui_render`, `KD_BENCH_LAB_LIKE`), more on a loaded machine
/// where each of those blocks is a cache miss. In chunks of 64 it copies
/// 157 chunk pointers and the 64 of the chunk it rebuilds.
const CHUNK: usize = 64;

/// One chunk: up to [`CHUNK`] blocks.
type Chunk = Arc<[Arc<[Entry]>]>;

/// Lines in blocks, each shared: kube-proxy's iptables tree is one block
/// per Service, so that a change of the findings naming a Service marks
/// its block again alone. Marking all 40,000 lines of 10,000 Services
/// again took 60–470 ms of each endpoint change's reading at scale
/// (`benches/tui_watch`). Block `i` is in chunk `i / CHUNK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks(Arc<Vec<Chunk>>);

impl Blocks {
    /// One block of every line.
    pub(super) fn one(entries: Vec<Entry>) -> Blocks {
        Blocks::of(vec![entries.into()])
    }

    /// These blocks, in order.
    pub(super) fn of(blocks: Vec<Arc<[Entry]>>) -> Blocks {
        Blocks(Arc::new(blocks.chunks(CHUNK).map(Chunk::from).collect()))
    }

    /// `count` blocks, block `i` made by `make(i)` — but where `before`
    /// holds `count` blocks (and maybe one [`Blocks::then`]) and
    /// `again(i)` is false, `before`'s block `i`, and `before`'s whole
    /// chunk when that is so of each of its blocks.
    pub(super) fn rebuilt(
        count: usize,
        before: Option<&Blocks>,
        again: impl Fn(usize) -> bool,
        mut make: impl FnMut(usize) -> Arc<[Entry]>,
    ) -> Blocks {
        let chunks = count.div_ceil(CHUNK);
        let len = |c: usize| count.min((c + 1) * CHUNK) - c * CHUNK;
        // Laid out as these will be (a block after them aside).
        let before =
            before.filter(|b| b.0.len() >= chunks && (0..chunks).all(|c| b.0[c].len() == len(c)));
        let chunks = (0..chunks).map(|c| {
            let range = c * CHUNK..count.min((c + 1) * CHUNK);
            let Some(b) = before else {
                return range.map(&mut make).collect();
            };
            if !range.clone().any(&again) {
                return b.0[c].clone();
            }
            range
                .map(|i| match again(i) {
                    true => make(i),
                    false => b.0[c][i - c * CHUNK].clone(),
                })
                .collect()
        });
        Blocks(Arc::new(chunks.collect()))
    }

    /// Block `i`.
    pub(super) fn block(&self, i: usize) -> Option<&Arc<[Entry]>> {
        self.0.get(i / CHUNK)?.get(i % CHUNK)
    }

    /// These blocks and `last` after them (a chunk of its own, so that
    /// block `i` stays in chunk `i / CHUNK`).
    pub(super) fn then(self, last: Arc<[Entry]>) -> Blocks {
        let mut chunks = Arc::unwrap_or_clone(self.0);
        chunks.push(Chunk::from(vec![last]));
        Blocks(Arc::new(chunks))
    }

    /// Every block, in order.
    pub(super) fn blocks(&self) -> impl Iterator<Item = &Arc<[Entry]>> + Clone {
        self.0.iter().flat_map(|c| c.iter())
    }

    /// How many blocks.
    pub(super) fn count(&self) -> usize {
        self.0.iter().map(|c| c.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.blocks().flat_map(|b| b.iter())
    }

    pub fn len(&self) -> usize {
        self.blocks().map(|b| b.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `other` is these very blocks (kept, not built again).
    pub fn same(&self, other: &Blocks) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// (blocks taken over from `before`, blocks): what a change marked
    /// again.
    #[cfg(test)]
    pub fn kept_from(&self, before: &Blocks) -> (usize, usize) {
        let theirs: std::collections::HashSet<*const Entry> =
            before.blocks().map(|b| b.as_ptr()).collect();
        let kept = self
            .blocks()
            .filter(|b| theirs.contains(&b.as_ptr()))
            .count();
        (kept, self.count())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Mark;
    use super::*;

    fn block(i: usize) -> Arc<[Entry]> {
        vec![Entry {
            kind: "sep",
            expected: format!("line {i}"),
            mark: Mark::Ok,
            finding: None,
        }]
        .into()
    }

    fn lines(b: &Blocks) -> Vec<String> {
        b.iter().map(|e| e.expected.clone()).collect()
    }

    #[test]
    fn rebuilt_keeps_untouched_chunks_and_blocks_and_makes_the_rest() {
        let count = 3 * CHUNK + 5;
        let first = Blocks::rebuilt(count, None, |_| true, block);
        assert_eq!(first.count(), count);
        assert_eq!(
            lines(&first),
            (0..count).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        // Block 70 (chunk 1) made again, as a new line.
        let again = |i: usize| i == 70;
        let mut made = Vec::new();
        let next = Blocks::rebuilt(count, Some(&first), again, |i| {
            made.push(i);
            vec![Entry {
                kind: "sep",
                expected: "new".into(),
                mark: Mark::Stale,
                finding: None,
            }]
            .into()
        });
        assert_eq!(made, [70], "only the block asked for is made");
        assert_eq!(next.count(), count);
        let mut want = lines(&first);
        want[70] = "new".into();
        assert_eq!(lines(&next), want);
        assert_eq!(next.kept_from(&first), (count - 1, count));
        // Chunks 0, 2 and 3 are the very chunks before; chunk 1 is new.
        for c in [0, 2, 3] {
            assert!(Arc::ptr_eq(&next.0[c], &first.0[c]), "chunk {c}");
        }
        assert!(!Arc::ptr_eq(&next.0[1], &first.0[1]));
        // A block after them leaves the others to be taken.
        let with_last = first.clone().then(block(999));
        let kept = Blocks::rebuilt(
            count,
            Some(&with_last),
            |_| false,
            |_| -> Arc<[Entry]> { unreachable!("every block is kept") },
        );
        assert_eq!(kept.kept_from(&first), (count, count));
        // Another count: nothing taken from before.
        let mut made = 0;
        let other = Blocks::rebuilt(
            count + 1,
            Some(&first),
            |_| false,
            |i| {
                made += 1;
                block(i)
            },
        );
        assert_eq!((made, other.kept_from(&first).0), (count + 1, 0));
    }

    #[test]
    fn a_block_after_keeps_the_others_in_their_chunks() {
        let b = Blocks::rebuilt(CHUNK + 1, None, |_| true, block).then(block(999));
        assert_eq!(b.count(), CHUNK + 2);
        assert_eq!(lines(&b).last().map(String::as_str), Some("line 999"));
        assert_eq!(b.0.len(), 3, "two chunks of the blocks, one of the last");
        assert_eq!(Blocks::one(Vec::new()).len(), 0);
        assert!(Blocks::default().is_empty() && Blocks::default().count() == 0);
    }
}
