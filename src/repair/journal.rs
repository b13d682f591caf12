//! The repair journal: one file per repair in the node's state directory,
//! written whole before the first change (every action with what it will
//! replace), then a progress log appended to as changes are made: before a
//! run of changes is sent, the range it covers; then each change's outcome.
//! A change of an interrupted run with no outcome counts as made — undoing
//! a change that was never made writes back what is already there — so
//! outcomes can be written in batches and a repair of 15,000 entries costs
//! a few hundred writes, not a rewrite of the journal per change. Reading a
//! journal merges its log. Also the per-node lock that keeps repairs apart.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Before;
use crate::check::RepairAction;
use crate::error::{Error, Result};

/// One step of a repair, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub action: RepairAction,
    pub finding: String,
    pub before: Before,
    /// Made (or, in a repair that was interrupted, possibly made).
    pub applied: bool,
    pub error: Option<String>,
}

/// A repair's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub node: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub entries: Vec<Entry>,
    /// Set when `repair --undo` restored it.
    pub undone: bool,
}

/// One line of the progress log.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Progress {
    /// Entries `attempt..end` are about to be sent.
    Attempt { attempt: usize, end: usize },
    /// Entry `unsent` was not sent after all (an earlier change failed).
    Unsent { unsent: usize },
    /// Entry `i` was made (no error) or failed.
    Outcome {
        i: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// The node's journal directory: `KNETDOCTOR_STATE_DIR` or
/// /var/lib/knetdoctor, then `repair/<node>`.
pub fn journal_dir(node: &str) -> PathBuf {
    std::env::var_os("KNETDOCTOR_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/knetdoctor"))
        .join("repair")
        .join(node)
}

/// Holds the node's repair lock until dropped.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Takes the node's repair lock, or says who holds it.
pub fn lock(dir: &Path) -> Result<Lock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            use std::io::Seek;
            let _ = f.set_len(0);
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = write!(f, "{}", std::process::id());
            Ok(Lock(f))
        }
        Err((_, _)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Error::env(
                format!(
                    "another repair of this node is running (process {})",
                    holder.trim()
                ),
                Some("wait for it to finish, then run again".into()),
            ))
        }
    }
}

impl Journal {
    /// A new journal for `node` (IDs sort in time order: fixed-width
    /// nanoseconds, then the process).
    pub fn new(node: &str, entries: Vec<Entry>) -> Journal {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Journal {
            id: format!("{:020}-{}", now.as_nanos(), std::process::id()),
            node: node.to_string(),
            started: now.as_secs(),
            entries,
            undone: false,
        }
    }

    fn path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    fn log_path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.log"))
    }

    /// One line for `--history` and the dashboard: the ID, how much was
    /// applied, the first failure, whether it was undone.
    pub fn summary(&self) -> String {
        let applied = self.entries.iter().filter(|e| e.applied).count();
        let failed = self.entries.iter().find_map(|e| e.error.as_deref());
        format!(
            "{}  {} of {} action(s) applied{}{}",
            self.id,
            applied,
            self.entries.len(),
            failed.map(|f| format!(", failed: {f}")).unwrap_or_default(),
            if self.undone { ", undone" } else { "" }
        )
    }

    /// Writes the journal whole (atomically) and drops its progress log.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir, &self.id);
        let tmp = dir.join(format!(".{}.json.tmp", self.id));
        let text = serde_json::to_vec(self).map_err(|e| Error::env(e.to_string(), None))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        let log = Self::log_path(dir, &self.id);
        match std::fs::remove_file(&log) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(log, e)),
            _ => Ok(()),
        }
    }

    /// The progress log to append to while the repair runs.
    pub fn progress(&self, dir: &Path) -> Result<ProgressLog> {
        let path = Self::log_path(dir, &self.id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(ProgressLog {
            file: std::io::BufWriter::new(file),
            path,
        })
    }

    /// Reads journal `id`, with the progress of a repair that did not end.
    pub fn load(dir: &Path, id: &str) -> Result<Journal> {
        let path = Self::path(dir, id);
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::usage(
                format!("no repair {id} in {}", dir.display()),
                Some("`repair --node NODE --history` lists the repairs".into()),
            ),
            _ => Error::io(&path, e),
        })?;
        let mut j: Journal = serde_json::from_slice(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            what: e.to_string(),
        })?;
        if let Ok(log) = std::fs::read_to_string(Self::log_path(dir, id)) {
            // A torn last line (the process died mid-write) is skipped.
            for p in log
                .lines()
                .filter_map(|l| serde_json::from_str::<Progress>(l).ok())
            {
                match p {
                    Progress::Attempt { attempt, end } => {
                        for e in j.entries.iter_mut().take(end).skip(attempt) {
                            e.applied = true;
                        }
                    }
                    Progress::Unsent { unsent } => {
                        if let Some(e) = j.entries.get_mut(unsent) {
                            e.applied = false;
                        }
                    }
                    Progress::Outcome { i, error } => {
                        if let Some(e) = j.entries.get_mut(i) {
                            e.applied = error.is_none();
                            e.error = error;
                        }
                    }
                }
            }
        }
        Ok(j)
    }
}

/// The append-only record of changes made so far.
pub struct ProgressLog {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl ProgressLog {
    fn line(&mut self, p: &Progress) -> Result<()> {
        let mut line = serde_json::to_vec(p).map_err(|e| Error::env(e.to_string(), None))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Records, on disk before it returns, that entries `start..end` are
    /// about to be sent.
    pub fn attempt(&mut self, start: usize, end: usize) -> Result<()> {
        self.line(&Progress::Attempt {
            attempt: start,
            end,
        })?;
        self.flush()
    }

    /// Records that entry `i` was made (`error` None) or failed; buffered
    /// until [`ProgressLog::flush`].
    pub fn record(&mut self, i: usize, error: Option<&str>) -> Result<()> {
        self.line(&Progress::Outcome {
            i,
            error: error.map(str::to_string),
        })
    }

    /// Records that entry `i` of an attempted run was not sent after all.
    pub fn unsent(&mut self, i: usize) -> Result<()> {
        self.line(&Progress::Unsent { unsent: i })
    }

    /// Writes the buffered outcomes out.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// The journals of past repairs, oldest first.
pub fn history(dir: &Path) -> Vec<Journal> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name.strip_suffix(".json")?;
                    (!id.starts_with('.')).then(|| id.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.iter()
        .filter_map(|id| Journal::load(dir, id).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> Entry {
        Entry {
            action: RepairAction::LinkMtu {
                dev: "flannel.1".into(),
                mtu: 1450 + i,
            },
            finding: "vtep-mtu-wrong".into(),
            before: Before::Mtu { mtu: 1400 },
            applied: false,
            error: None,
        }
    }

    #[test]
    fn progress_of_an_unfinished_repair_is_read_back_and_folded_in_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new("n", (0..3).map(entry).collect());
        j.save(dir.path()).unwrap();
        let mut log = j.progress(dir.path()).unwrap();
        log.attempt(0, 2).unwrap();
        log.record(1, Some("boom")).unwrap();
        log.flush().unwrap();
        // Entry 0's outcome was never written; the process dies mid-line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(format!("{}.log", j.id)))
            .unwrap()
            .write_all(b"{\"i\":2")
            .unwrap();
        let read = Journal::load(dir.path(), &j.id).unwrap();
        let states: Vec<(bool, Option<String>)> = read
            .entries
            .iter()
            .map(|e| (e.applied, e.error.clone()))
            .collect();
        assert_eq!(
            states,
            vec![(true, None), (false, Some("boom".into())), (false, None)]
        );
        read.save(dir.path()).unwrap();
        assert!(!dir.path().join(format!("{}.log", j.id)).exists());
        assert_eq!(history(dir.path()).len(), 1);
        assert!(history(dir.path())[0].entries[0].applied);
    }

    #[test]
    fn an_unknown_id_says_where_to_look() {
        let dir = tempfile::tempdir().unwrap();
        let e = Journal::load(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("no repair nope"), "{e}");
    }
}
