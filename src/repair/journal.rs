//! The repair journal: one file per repair in the node's state directory,
//! written whole and synced (file and directory) before the first change
//! (every action with what it will replace), then a progress log appended
//! to as changes are made: before each datagram or single change is sent,
//! the entries it carries (synced); then each change's outcome; at the end,
//! that the repair finished. An entry sent without a recorded outcome
//! counts as possibly made — undoing a change that was never made writes
//! back what is already there — so outcomes can be written in batches and
//! a repair of 15,000 entries costs a few hundred writes. An undo keeps a
//! log of its own beside it in the same way, so a failed or interrupted
//! undo says what it put back and can be run again for the rest. Reading a
//! journal merges both logs. Also the per-node lock that keeps repairs and
//! undos apart. Everything here is 0600 in a 0700 directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::plan::Before;
use crate::check::RepairAction;
use crate::error::{Error, Result};
use crate::files;

/// One step of a repair, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub action: RepairAction,
    pub finding: crate::check::FindingId,
    pub before: Before,
    /// Made (or, when `unanswered`, sent and possibly made).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sent, but the repair ended before the kernel's answer was recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
    /// What an undo did with it.
    #[serde(default, skip_serializing_if = "Restore::is_untouched")]
    pub restore: Restore,
}

/// What an undo did with one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "error", rename_all = "kebab-case")]
pub enum Restore {
    /// Not touched by an undo.
    #[default]
    Untouched,
    /// Sent; the undo ended before the answer was recorded.
    Unanswered,
    /// Put back.
    Restored,
    /// The kernel refused to put it back.
    Failed(String),
}

impl Restore {
    fn is_untouched(&self) -> bool {
        *self == Restore::Untouched
    }
}

/// Where a repair stands, from its journal and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Every action was made.
    #[default]
    Finished,
    /// It stopped at a change the kernel refused.
    Failed,
    /// Its process is still at work.
    Running,
    /// Its process died before it finished.
    Interrupted,
    /// Everything it changed was put back.
    Undone,
    /// An undo stopped at a change the kernel refused; `--undo` again
    /// tries the rest.
    PartlyUndone,
    /// An undo's process died before it finished.
    UndoInterrupted,
    /// The journal could not be read (see `unreadable`).
    Unreadable,
}

/// A repair's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub node: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub entries: Vec<Entry>,
    /// Set when `repair --undo` put back everything the repair made.
    pub undone: bool,
    /// The repair ran to its end (every change made, or stopped at a
    /// failure).
    #[serde(default)]
    pub finished: bool,
    /// Where it stands (computed when read).
    #[serde(default)]
    pub status: Status,
    /// Why the journal could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One line of a progress log (a repair's or an undo's).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Progress {
    /// These entries are about to be sent.
    Sending { sending: Vec<usize> },
    /// Entries `attempt..end` are about to be sent (journals of earlier
    /// versions).
    Attempt { attempt: usize, end: usize },
    /// Entry `unsent` was not sent after all (an earlier change failed).
    Unsent { unsent: usize },
    /// Entry `i` was made (no error) or failed.
    Outcome {
        i: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The run reached its end.
    Done { done: bool },
}

/// Whether process `pid` runs and started no later than `since` (seconds
/// since the epoch): the process that began a repair then, not a later one
/// given its PID — a restarted agent in a PID namespace of its own is PID
/// 1 again — and not a zombie nobody reaped.
fn writer_alive(pid: i32, since: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let mut fields = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace();
    if fields.next() == Some("Z") {
        return false;
    }
    let Some(ticks) = fields.nth(18).and_then(|t| t.parse::<u64>().ok()) else {
        return false;
    };
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|b| b.trim().parse::<u64>().ok())
    });
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100) as u64;
    // btime is whole seconds: a second's slack.
    boot.is_some_and(|b| b + ticks / hz <= since + 1)
}

/// The node's journal directory: `KNETDOCTOR_STATE_DIR` or
/// /var/lib/knetdoctor, then `repair/<node>`.
pub fn journal_dir(node: &str) -> PathBuf {
    journal_dir_in(
        &std::env::var_os("KNETDOCTOR_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/knetdoctor")),
        node,
    )
}

/// The journal directory of `node` under state directory `state`.
pub fn journal_dir_in(state: &Path, node: &str) -> PathBuf {
    state.join("repair").join(node)
}

/// Holds the node's repair lock until dropped.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Takes the node's repair lock, or says who holds it.
pub fn lock(dir: &Path) -> Result<Lock> {
    files::private_dir(dir)?;
    let path = dir.join("lock");
    let file = files::open_private(&path)?;
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

/// Whether a journal ID names a repair (`<20 digits>-<pid>`), so that no ID
/// read from the command line or a directory is ever a path.
pub fn valid_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(nanos, pid)| {
        nanos.len() == 20
            && nanos.bytes().all(|b| b.is_ascii_digit())
            && (1..=10).contains(&pid.len())
            && pid.bytes().all(|b| b.is_ascii_digit())
    })
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
            finished: false,
            status: Status::Running,
            unreadable: None,
        }
    }

    fn path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    fn log_path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.log"))
    }

    fn undo_log_path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.undo.log"))
    }

    /// The process that made the repair (the ID's suffix).
    fn pid(&self) -> Option<i32> {
        self.id.rsplit_once('-')?.1.parse().ok()
    }

    /// One line for `--history` and the dashboard: the ID, where the repair
    /// stands, and what the kernel received.
    pub fn summary(&self) -> String {
        let n = self.entries.len();
        let made = self
            .entries
            .iter()
            .filter(|e| e.applied && !e.unanswered)
            .count();
        let unanswered = self.entries.iter().filter(|e| e.unanswered).count();
        let failed = self.entries.iter().find_map(|e| e.error.as_deref());
        let counts = || {
            let mut c = format!("{made} of {n} action(s) made");
            if unanswered > 0 {
                c.push_str(&format!(", {unanswered} sent without a recorded answer"));
            }
            c
        };
        let restored = self
            .entries
            .iter()
            .filter(|e| e.restore == Restore::Restored)
            .count();
        let to_restore = self.entries.iter().filter(|e| e.applied).count();
        let restore_failed = self.entries.iter().find_map(|e| match &e.restore {
            Restore::Failed(m) => Some(m.as_str()),
            _ => None,
        });
        let id = &self.id;
        match self.status {
            Status::Unreadable => format!(
                "{id}  unreadable: {}",
                self.unreadable.as_deref().unwrap_or("")
            ),
            Status::Finished => format!("{id}  finished: {}", counts()),
            Status::Failed => format!(
                "{id}  failed: {}; refused: {}",
                counts(),
                failed.unwrap_or("")
            ),
            Status::Running => format!(
                "{id}  running (process {}): {} so far",
                self.pid().unwrap_or(0),
                counts()
            ),
            Status::Interrupted => format!(
                "{id}  interrupted (its process died): {}, {} not sent",
                counts(),
                n - made - unanswered - usize::from(failed.is_some())
            ),
            Status::Undone => format!("{id}  undone: {} change(s) put back", restored),
            Status::PartlyUndone => format!(
                "{id}  partly undone: {restored} of {to_restore} put back, refused: {}; `--undo {id}` again tries the rest",
                restore_failed.unwrap_or("")
            ),
            Status::UndoInterrupted => format!(
                "{id}  undo interrupted: {restored} of {to_restore} put back; `--undo {id}` again puts back the rest"
            ),
        }
    }

    /// Writes the journal whole (a synced temporary file renamed over it,
    /// the directory synced) and drops the progress logs it folds in.
    pub fn save(&self, dir: &Path) -> Result<()> {
        files::private_dir(dir)?;
        self.write(dir)?;
        for log in [
            Self::log_path(dir, &self.id),
            Self::undo_log_path(dir, &self.id),
        ] {
            match std::fs::remove_file(&log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(log, e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a new repair's journal whole and opens its progress log,
    /// both on disk before it returns. The log is made first so that the
    /// one directory sync after the journal's rename covers both: the
    /// first change waits for every sync here (3 MiB and 2-27 ms for a
    /// 5,000-peer node on ext4).
    pub fn begin(&self, dir: &Path) -> Result<SharedLog> {
        files::private_dir(dir)?;
        let log = ProgressLog::unsynced(Self::log_path(dir, &self.id))?;
        self.write(dir)?;
        Ok(log)
    }

    /// The journal, whole, in place in `dir` (synced, renamed, the
    /// directory synced).
    fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| Error::env(e.to_string(), None))?;
        files::write_private(&Self::path(dir, &self.id), &text)
    }

    /// The progress log of a journal already saved (tests write one the
    /// way a repair would).
    #[cfg(test)]
    fn progress(&self, dir: &Path) -> Result<SharedLog> {
        ProgressLog::open(dir, Self::log_path(dir, &self.id))
    }

    /// The undo's progress log.
    pub fn undo_progress(&self, dir: &Path) -> Result<SharedLog> {
        ProgressLog::open(dir, Self::undo_log_path(dir, &self.id))
    }

    /// Reads journal `id`, with the progress of a repair or an undo that
    /// did not end.
    pub fn load(dir: &Path, id: &str) -> Result<Journal> {
        if !valid_id(id) {
            return Err(Error::usage(
                format!("{id:?} is not a repair ID"),
                Some("`repair --node NODE --history` lists the repairs".into()),
            ));
        }
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
        if j.id != id {
            return Err(Error::Parse {
                path,
                what: format!("it is the journal of repair {}", j.id),
            });
        }
        for p in read_log(&Self::log_path(dir, id)) {
            match p {
                Progress::Sending { sending } => {
                    for &k in &sending {
                        if let Some(e) = j.entries.get_mut(k) {
                            e.applied = true;
                            e.unanswered = true;
                        }
                    }
                }
                Progress::Attempt { attempt, end } => {
                    for e in j.entries.iter_mut().take(end).skip(attempt) {
                        e.applied = true;
                        e.unanswered = true;
                    }
                }
                Progress::Unsent { unsent } => {
                    if let Some(e) = j.entries.get_mut(unsent) {
                        e.applied = false;
                        e.unanswered = false;
                    }
                }
                Progress::Outcome { i, error } => {
                    if let Some(e) = j.entries.get_mut(i) {
                        e.applied = error.is_none();
                        e.unanswered = false;
                        e.error = error;
                    }
                }
                Progress::Done { done } => j.finished |= done,
            }
        }
        let undo_log = Self::undo_log_path(dir, id);
        let undo_started = undo_log.exists();
        let mut undo_done = false;
        for p in read_log(&undo_log) {
            match p {
                Progress::Sending { sending } => {
                    for &k in &sending {
                        if let Some(e) = j.entries.get_mut(k) {
                            e.restore = Restore::Unanswered;
                        }
                    }
                }
                Progress::Outcome { i, error } => {
                    if let Some(e) = j.entries.get_mut(i) {
                        e.restore = match error {
                            None => Restore::Restored,
                            Some(m) => Restore::Failed(m),
                        };
                    }
                }
                Progress::Done { done } => undo_done |= done,
                Progress::Attempt { .. } | Progress::Unsent { .. } => {}
            }
        }
        j.status = j.judge(undo_started, undo_done);
        Ok(j)
    }

    /// Where the repair stands, from its entries and logs.
    fn judge(&self, undo_started: bool, undo_done: bool) -> Status {
        let restore_failed = self
            .entries
            .iter()
            .any(|e| matches!(e.restore, Restore::Failed(_)));
        if self.undone {
            return Status::Undone;
        }
        if restore_failed {
            return Status::PartlyUndone;
        }
        if undo_started && !undo_done {
            return Status::UndoInterrupted;
        }
        if self.entries.iter().any(|e| e.error.is_some()) {
            return Status::Failed;
        }
        if self.finished {
            return Status::Finished;
        }
        if self.pid().is_some_and(|p| writer_alive(p, self.started)) {
            Status::Running
        } else {
            Status::Interrupted
        }
    }

    /// A journal that could not be read, for the history.
    fn unreadable(node: &str, id: &str, why: String) -> Journal {
        Journal {
            id: id.to_string(),
            node: node.to_string(),
            started: 0,
            entries: Vec::new(),
            undone: false,
            finished: false,
            status: Status::Unreadable,
            unreadable: Some(why),
        }
    }
}

/// The lines of a progress log; a torn last line (the process died
/// mid-write) is skipped.
fn read_log(path: &Path) -> Vec<Progress> {
    std::fs::read_to_string(path)
        .map(|log| {
            log.lines()
                .filter_map(|l| serde_json::from_str::<Progress>(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The append-only record of changes made so far.
pub struct ProgressLog {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

/// A progress log shared by the threads that send and the one that
/// records.
pub type SharedLog = Arc<Mutex<ProgressLog>>;

impl ProgressLog {
    fn open(dir: &Path, path: PathBuf) -> Result<SharedLog> {
        let log = Self::unsynced(path)?;
        files::sync_dir(dir)?;
        Ok(log)
    }

    /// Opens the log without syncing its directory (the caller does).
    fn unsynced(path: PathBuf) -> Result<SharedLog> {
        let file = files::open_private_append(&path)?;
        Ok(Arc::new(Mutex::new(ProgressLog {
            file: std::io::BufWriter::new(file),
            path,
        })))
    }

    fn line(&mut self, p: &Progress) -> Result<()> {
        let mut line = serde_json::to_vec(p).map_err(|e| Error::env(e.to_string(), None))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Records, on disk before it returns, that `entries` are about to be
    /// sent.
    pub fn sending(&mut self, entries: &[usize]) -> Result<()> {
        self.line(&Progress::Sending {
            sending: entries.to_vec(),
        })?;
        self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Records that entry `i` was made (`error` None) or failed; buffered
    /// until [`ProgressLog::flush`].
    pub fn record(&mut self, i: usize, error: Option<&str>) -> Result<()> {
        self.line(&Progress::Outcome {
            i,
            error: error.map(str::to_string),
        })
    }

    /// Records that entry `i` was not sent after all.
    pub fn unsent(&mut self, i: usize) -> Result<()> {
        self.line(&Progress::Unsent { unsent: i })
    }

    /// Records that the run reached its end, and writes everything out.
    pub fn done(&mut self) -> Result<()> {
        self.line(&Progress::Done { done: true })?;
        self.flush()
    }

    /// Writes the buffered outcomes out.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Locks a shared log (a thread that panicked while holding it left
/// nothing half-written that a later line could not follow).
pub fn locked(log: &SharedLog) -> std::sync::MutexGuard<'_, ProgressLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The journals of past repairs, oldest first; one that cannot be read is
/// listed as unreadable with the reason.
pub fn history(dir: &Path) -> Vec<Journal> {
    let node = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
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
        .map(|id| {
            if !valid_id(id) {
                return Journal::unreadable(&node, id, "not a journal's name".into());
            }
            Journal::load(dir, id).unwrap_or_else(|e| Journal::unreadable(&node, id, e.to_string()))
        })
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
            finding: crate::check::FindingId::VtepMtuWrong,
            before: Before::Mtu { mtu: 1400 },
            applied: false,
            error: None,
            unanswered: false,
            restore: Restore::Untouched,
        }
    }

    /// A journal of three entries whose process is gone.
    fn dead(dir: &Path) -> Journal {
        let mut j = Journal::new("n", (0..3).map(entry).collect());
        j.id = "01764570000123456789-999999999".into();
        j.save(dir).unwrap();
        j
    }

    fn log_line(dir: &Path, name: &str, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_repair_killed_mid_way_shows_what_the_kernel_received() {
        let dir = tempfile::tempdir().unwrap();
        let j = dead(dir.path());
        {
            let log = j.progress(dir.path()).unwrap();
            let mut log = locked(&log);
            log.sending(&[0]).unwrap();
            log.record(0, None).unwrap();
            log.sending(&[1]).unwrap();
            log.flush().unwrap();
        }
        // The process dies mid-line.
        log_line(dir.path(), &format!("{}.log", j.id), "{\"i\":1");
        let read = Journal::load(dir.path(), &j.id).unwrap();
        let states: Vec<(bool, bool)> = read
            .entries
            .iter()
            .map(|e| (e.applied, e.unanswered))
            .collect();
        assert_eq!(states, vec![(true, false), (true, true), (false, false)]);
        assert_eq!(read.status, Status::Interrupted);
        assert_eq!(
            read.summary(),
            "01764570000123456789-999999999  interrupted (its process died): 1 of 3 action(s) made, 1 sent without a recorded answer, 1 not sent"
        );
    }

    #[test]
    fn a_repair_killed_before_sending_anything_made_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = dead(dir.path());
        let read = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(read.status, Status::Interrupted);
        assert!(
            read.summary().contains("0 of 3 action(s) made, 3 not sent"),
            "{}",
            read.summary()
        );
    }

    #[test]
    fn a_failed_repair_and_a_finished_one_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let j = dead(dir.path());
        {
            let log = j.progress(dir.path()).unwrap();
            let mut log = locked(&log);
            log.sending(&[0, 1]).unwrap();
            log.record(0, None).unwrap();
            log.record(1, Some("boom")).unwrap();
            log.done().unwrap();
        }
        let read = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(read.status, Status::Failed);
        assert!(
            read.summary()
                .contains("failed: 1 of 3 action(s) made; refused: boom"),
            "{}",
            read.summary()
        );
        read.save(dir.path()).unwrap();
        assert!(!dir.path().join(format!("{}.log", j.id)).exists());
        assert_eq!(
            Journal::load(dir.path(), &j.id).unwrap().status,
            Status::Failed
        );
    }

    #[test]
    fn an_undo_is_journaled_partly_interrupted_or_whole() {
        let dir = tempfile::tempdir().unwrap();
        let j = dead(dir.path());
        {
            let log = j.progress(dir.path()).unwrap();
            let mut log = locked(&log);
            log.sending(&[0, 1, 2]).unwrap();
            for i in 0..3 {
                log.record(i, None).unwrap();
            }
            log.done().unwrap();
        }
        let j = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(j.status, Status::Finished);
        {
            let log = j.undo_progress(dir.path()).unwrap();
            let mut log = locked(&log);
            log.sending(&[2, 1, 0]).unwrap();
            log.record(2, None).unwrap();
            log.flush().unwrap();
        }
        let read = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(read.status, Status::UndoInterrupted);
        assert!(
            read.summary().contains("undo interrupted: 1 of 3 put back"),
            "{}",
            read.summary()
        );
        {
            let log = read.undo_progress(dir.path()).unwrap();
            let mut log = locked(&log);
            log.record(1, Some("no such device")).unwrap();
            log.done().unwrap();
        }
        let read = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(read.status, Status::PartlyUndone);
        assert!(
            read.summary()
                .contains("partly undone: 1 of 3 put back, refused: no such device"),
            "{}",
            read.summary()
        );
    }

    #[test]
    fn unreadable_journals_are_listed_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        dead(dir.path());
        std::fs::write(dir.path().join("01764570000123456780-1.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("notes.json"), b"{}").unwrap();
        let past = history(dir.path());
        let statuses: Vec<Status> = past.iter().map(|j| j.status).collect();
        assert_eq!(
            statuses,
            vec![Status::Unreadable, Status::Interrupted, Status::Unreadable]
        );
        assert!(
            past[0].summary().contains("unreadable: "),
            "{}",
            past[0].summary()
        );
        assert!(
            past[2]
                .summary()
                .contains("notes  unreadable: not a journal"),
            "{}",
            past[2].summary()
        );
    }

    /// What was there before, and the entry's outcome, survive the trip
    /// to disk whether they were written whole (journals of earlier
    /// versions) or as the kind alone for "nothing was there".
    #[test]
    fn a_journal_reads_back_what_each_entry_replaced() {
        use crate::dataplane::Mac;
        use std::net::IpAddr;
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "10.244.7.0".parse().unwrap();
        let mac = Mac([2, 0, 0, 0, 0, 7]);
        let neigh = RepairAction::NeighReplace {
            dev: "flannel.1".into(),
            ip,
            mac,
        };
        let at = |before, applied, error: Option<&str>| Entry {
            action: neigh.clone(),
            finding: crate::check::FindingId::NeighMissing,
            before,
            applied,
            error: error.map(str::to_string),
            unanswered: false,
            restore: Restore::Untouched,
        };
        let absent = Before::Neigh {
            lladdr: None,
            permanent: false,
        };
        let there = Before::Neigh {
            lladdr: Some(Mac([2, 0, 0, 0, 0, 8])),
            permanent: true,
        };
        let mut j = Journal::new(
            "n",
            vec![
                at(absent.clone(), false, None),
                at(there.clone(), true, Some("refused")),
            ],
        );
        j.id = "01764570000123456789-999999999".into();
        j.finished = true;
        j.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(format!("{}.json", j.id))).unwrap();
        assert!(text.contains(r#""before":{"kind":"neigh"}}"#), "{text}");
        let read = Journal::load(dir.path(), &j.id).unwrap();
        let got: Vec<(Before, bool, Option<String>)> = read
            .entries
            .iter()
            .map(|e| (e.before.clone(), e.applied, e.error.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (absent.clone(), false, None),
                (there, true, Some("refused".into()))
            ]
        );
        // An earlier version wrote every field.
        let old = text.replace(
            r#""before":{"kind":"neigh"}}"#,
            r#""before":{"kind":"neigh","lladdr":null,"permanent":false},"applied":false,"error":null}"#,
        );
        assert_ne!(old, text);
        std::fs::write(dir.path().join(format!("{}.json", j.id)), old).unwrap();
        let read = Journal::load(dir.path(), &j.id).unwrap();
        assert_eq!(read.entries[0].before, absent);
        assert!(!read.entries[0].applied && read.entries[0].error.is_none());
        let routes = [
            Before::Route { route: None },
            Before::Fdb { dsts: vec![] },
            Before::Route {
                route: Some((Some(ip), "flannel.1".into(), true)),
            },
        ];
        for b in routes {
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(serde_json::from_str::<Before>(&json).unwrap(), b, "{json}");
        }
    }

    #[test]
    fn ids_that_are_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Journal::load(dir.path(), "../../tmp/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a repair ID"), "{e}");
    }

    #[test]
    fn an_unknown_id_says_where_to_look() {
        let dir = tempfile::tempdir().unwrap();
        let e = Journal::load(dir.path(), "01764570000123456789-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no repair 01764570000123456789-1"), "{e}");
    }
}
