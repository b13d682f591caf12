//! A large List decoded as it is read, so that its text is never held
//! whole: the 150,000 pods of a large cluster are 100 MiB of JSON, which
//! the whole-file way keeps until the last pod is decoded — on top of the
//! 870 MiB the pods themselves take, at the load's peak. One thread reads
//! the file in chunks and cuts the items out ([`split`](super::split),
//! ≈0.1 s for 100 MiB), runs of items are decoded on every core as they
//! come, and joined in order.
//!
//! This is the fast way only: a file it cannot take as is (a single
//! object, items that name no kind in a list that names its kind after
//! them, any error at all) is read again the whole-file way, which says
//! what is wrong and where.

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use super::split::Splitter;
use super::{Decoded, RUN, decode_item};

/// Files at least this large are streamed; below, reading the text whole
/// is as cheap and the text is small beside what it decodes into.
pub(super) const FROM_BYTES: u64 = 16 << 20;

/// How much is read at a time: the text held is this and the items not
/// yet handed over (under a run's worth).
const CHUNK: u64 = 4 << 20;

/// One run of items on its way to a decoding thread.
struct Run {
    /// Its place in the file (runs are joined in this order).
    k: usize,
    /// The list's kind less `List`, when the list named it before its
    /// items (empty otherwise).
    list_kind: Arc<str>,
    /// The run's items and what lies between them, as in the file: one
    /// copy for a thousand items.
    text: String,
    /// Where each item is in `text`.
    items: Vec<Range<usize>>,
}

/// Decodes the List in `path` into `out`. `Ok(false)` when it
/// must be read the whole-file way instead (nothing was added to `out`).
pub(super) fn read_file(path: &Path, out: &mut Decoded) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut mine = Decoded::default();
    let (runs_tx, runs_rx) = sync_channel::<Run>(2 * threads);
    let runs_rx = Mutex::new(runs_rx);
    let streamed = std::thread::scope(|s| {
        // (run, its decoded objects unless one failed)
        let (done_tx, done) = channel::<(usize, Option<Decoded>)>();
        let cutter = s.spawn(move || cut(file, &runs_tx));
        for _ in 0..threads {
            let (runs, done_tx) = (&runs_rx, done_tx.clone());
            s.spawn(move || {
                loop {
                    let Ok(run) = runs
                        .lock()
                        .map_err(|_| ())
                        .and_then(|r| r.recv().map_err(|_| ()))
                    else {
                        return;
                    };
                    let mut d = Decoded::default();
                    let ok = run.items.iter().all(|r| {
                        let body = &run.text[r.clone()];
                        decode_item(path, body, &run.list_kind, run.k * RUN, body, &mut d).is_ok()
                    });
                    let sent = (run.k, ok.then_some(d));
                    if done_tx.send(sent).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Joined in order as they come in (pointers: each object is
        // behind its own `Arc`), each run freed once joined.
        let mut waiting = std::collections::BTreeMap::new();
        let (mut joined, mut failed) = (0, false);
        for (k, run) in done {
            match run {
                Some(run) if !failed => {
                    waiting.insert(k, run);
                }
                _ => failed = true,
            }
            while let Some(run) = waiting.remove(&joined) {
                mine.join(run);
                joined += 1;
            }
        }
        let (read, runs) = cutter.join().unwrap_or((false, 0));
        read && !failed && joined == runs
    });
    if streamed {
        // A whole file's objects: taken over, not copied.
        out.join(mine);
    }
    Ok(streamed)
}

/// Reads `file` a chunk at a time and sends its items in runs of [`RUN`]:
/// (whether it was a List read to its end, how many runs were sent).
fn cut(mut file: std::fs::File, runs: &SyncSender<Run>) -> (bool, usize) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK as usize);
    let mut split = Splitter::new();
    let mut found: Vec<Range<usize>> = Vec::with_capacity(2 * RUN);
    let mut list_kind: Arc<str> = Arc::from("");
    let mut k = 0;
    loop {
        let Ok(n) = (&mut file).take(CHUNK).read_to_end(&mut buf) else {
            return (false, k);
        };
        let eof = n == 0;
        if split.scan(&buf, eof, &mut found).is_err() {
            return (false, k);
        }
        if list_kind.is_empty()
            && let Some(own) = &split.list_kind
        {
            list_kind = Arc::from(own.as_str());
        }
        while found.len() >= RUN || (eof && !found.is_empty()) {
            let take = found.len().min(RUN);
            let (from, to) = (found[0].start, found[take - 1].end);
            let Ok(text) = String::from_utf8(buf[from..to].to_vec()) else {
                return (false, k);
            };
            let items = found
                .drain(..take)
                .map(|r| r.start - from..r.end - from)
                .collect();
            let run = Run {
                k,
                list_kind: list_kind.clone(),
                text,
                items,
            };
            if runs.send(run).is_err() {
                return (false, k);
            }
            k += 1;
        }
        if eof {
            return (split.items, k);
        }
        // What was handed over (and read past) is dropped.
        let keep = found
            .first()
            .map_or(split.needed(), |r| r.start.min(split.needed()));
        buf.drain(..keep);
        split.shift(keep);
        for r in &mut found {
            (r.start, r.end) = (r.start - keep, r.end - keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, Size};

    /// A file read both ways: (streamed?, streamed objects, whole-file
    /// objects) as JSON.
    fn both(path: &Path) -> (bool, serde_json::Value, serde_json::Value) {
        let mut streamed = Decoded::default();
        let ok = read_file(path, &mut streamed).unwrap();
        let mut whole = Decoded::default();
        let text = std::fs::read_to_string(path).unwrap();
        let _ = super::super::read_file(path, &text, &mut whole);
        let json =
            |d: &Decoded| serde_json::json!({"cluster": d.cluster, "endpoints": d.endpoints});
        (ok, json(&streamed), json(&whole))
    }

    #[test]
    fn a_streamed_list_decodes_as_the_whole_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = synthetic::cluster(Size {
            nodes: 40,
            pods: 2_500,
            services: 30,
            endpoints_per_service: 3,
        });
        super::super::write_dir(&cluster, dir.path()).unwrap();
        for file in [
            "pods.json",
            "nodes.json",
            "services.json",
            "endpointslices.json",
        ] {
            let (ok, streamed, whole) = both(&dir.path().join(file));
            assert!(ok, "{file} was not streamed");
            assert_eq!(streamed, whole, "{file}");
        }
        // 2,500 pods: three runs, joined in order.
        let (_, streamed, _) = both(&dir.path().join("pods.json"));
        let names: Vec<&str> = streamed["cluster"]["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = cluster
            .pods
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn what_it_cannot_take_is_left_to_the_whole_file_way() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let pod = |name: &str| {
            format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"a"}},"spec":{{"nodeName":"n"}}}}"#
            )
        };
        let cases = [
            // A single object, not a List.
            write(
                "single.json",
                &format!(r#"{{"apiVersion":"v1","kind":"Pod",{}"#, &pod("p")[1..]),
            ),
            // Items without a kind, the list's kind after them.
            write(
                "late.json",
                &format!(r#"{{"items":[{}],"kind":"PodList"}}"#, pod("p")),
            ),
            // Not JSON half way.
            write(
                "cut.json",
                &format!(r#"{{"kind":"PodList","items":[{},{{"metadata":"#, pod("p")),
            ),
            // An item of the wrong shape.
            write(
                "bad.json",
                r#"{"kind":"PodList","items":[{"metadata":{"name":7}}]}"#,
            ),
        ];
        for path in &cases {
            let (ok, streamed, _) = both(path);
            assert!(!ok, "{} was streamed", path.display());
            assert_eq!(
                streamed["cluster"]["pods"],
                serde_json::json!([]),
                "{}",
                path.display()
            );
        }
        // The list's kind before its items names them.
        let early = write(
            "early.json",
            &format!(
                r#"{{"kind":"PodList","items":[{},{}]}}"#,
                pod("p"),
                pod("q")
            ),
        );
        let (ok, streamed, whole) = both(&early);
        assert!(ok);
        assert_eq!(streamed, whole);
        assert_eq!(streamed["cluster"]["pods"].as_array().unwrap().len(), 2);
    }
}
