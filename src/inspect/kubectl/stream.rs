//! A large List decoded as it is read, so that its text is never held
//! whole: the 150,000 pods of a large cluster are 100 MiB of JSON, which
//! the whole-file way keeps until the last pod is decoded — on top of the
//! 870 MiB the pods themselves take, at the load's peak. One thread reads
//! the file and cuts the items out (≈0.3 s for 100 MiB), runs of items
//! are decoded on every core as they come, and joined in order.
//!
//! This is the fast way only: a file it cannot take as is (a single
//! object, items that name no kind in a list that names its kind after
//! them, any error at all) is read again the whole-file way, which says
//! what is wrong and where.

use std::fmt;
use std::io::BufReader;
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Decoded, RUN, decode_item};

/// Files at least this large are streamed; below, reading the text whole
/// is as cheap and the text is small beside what it decodes into.
pub(super) const FROM_BYTES: u64 = 16 << 20;

/// One run of items on its way to a decoding thread.
struct Run {
    /// Its place in the file (runs are joined in this order).
    k: usize,
    /// The list's kind less `List`, when the list named it before its
    /// items (empty otherwise).
    list_kind: Arc<str>,
    items: Vec<Box<RawValue>>,
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
        let cutter = s.spawn(move || {
            let mut de =
                serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
            let mut cut = Cutter {
                runs: runs_tx,
                list_kind: Arc::from(""),
                run: Vec::with_capacity(RUN),
                k: 0,
                items: false,
            };
            let read = de.deserialize_map(&mut cut).and_then(|()| de.end());
            (read.is_ok() && cut.items, cut.k)
        });
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
                    let ok = run.items.iter().all(|raw| {
                        let body = raw.get();
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

/// Cuts a List's items out as the file is read, in runs of [`RUN`].
struct Cutter {
    runs: std::sync::mpsc::SyncSender<Run>,
    list_kind: Arc<str>,
    run: Vec<Box<RawValue>>,
    /// Runs sent so far.
    k: usize,
    /// Whether the document had `items`.
    items: bool,
}

impl Cutter {
    fn send(&mut self) -> bool {
        let items = std::mem::replace(&mut self.run, Vec::with_capacity(RUN));
        let run = Run {
            k: self.k,
            list_kind: self.list_kind.clone(),
            items,
        };
        self.k += 1;
        self.runs.send(run).is_ok()
    }
}

impl<'de> Visitor<'de> for &mut Cutter {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kubectl List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" if !self.items => {
                    let kind: String = map.next_value()?;
                    self.list_kind = Arc::from(kind.trim_end_matches("List"));
                }
                "items" => {
                    map.next_value_seed(&mut *self)?;
                    self.items = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            self.run.push(item);
            if self.run.len() == RUN && !self.send() {
                return Err(de::Error::custom("the decoders stopped"));
            }
        }
        if !self.run.is_empty() && !self.send() {
            return Err(de::Error::custom("the decoders stopped"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut Cutter {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
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
