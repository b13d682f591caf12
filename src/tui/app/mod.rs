//! The dashboard's state and what each key does to it (pure: no terminal,
//! no I/O — work that needs I/O is queued as a [`Job`] for the loop). Keys
//! follow k9s and htop: `:` jumps to a view by name, `/` filters, `?` lists
//! the keys, Enter drills down, Esc goes back, `q` or Ctrl-C quits, j/k and
//! the arrows move; `t` traces, `c` captures, `r` plans a repair.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

mod prompt;

use super::capture::Buffer;
use super::resources::{self, Kind, Listed};
use super::snapshot::Snapshot;
use crate::inspect::chain::LinkedView;
use crate::repair::journal::Journal;

/// A screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Nodes with their health, and the cluster's findings.
    Overview,
    /// Ingresses, Services, DNS names, Pods and Nodes (one kind, or all).
    Resources(Option<Kind>),
    /// One object and everything it links to, up and down.
    Object(Kind, String),
    /// One node's devices, per-peer entries and kube-proxy's rules against
    /// `expect()`.
    Node(String),
    /// A trace between two picked ends, and its probe.
    Trace,
    /// Live packets on a node's cni0, flannel.1 and eth0.
    Capture(String),
    /// What `repair` would do on a node; `a` applies it after a yes.
    Repair(String),
    /// A node's past repairs; `u` undoes one after a yes.
    History(String),
    /// Every key.
    Help,
}

/// Which end of a trace is being picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    From,
    To,
}

/// Something to confirm with `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Apply(String),
    Undo { node: String, id: String },
}

/// A line being typed at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `:view` — a view by name.
    Command(String),
    /// `/text` — keep the lines containing it.
    Filter(String),
    /// y/n.
    Confirm(Confirm),
    /// A trace end by fuzzy search: the query, the ranked matches (indexes
    /// into the snapshot's trace targets) and the selected one.
    Pick {
        end: End,
        query: String,
        matches: Vec<usize>,
        selected: usize,
    },
}

/// Work for the loop, done off the render thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `repair --apply --yes` on the node.
    Repair(String),
    /// `repair --undo ID`.
    Undo { node: String, id: String },
    /// `repair --history` of the node.
    History(String),
    /// The static trace between two ends.
    Trace { from: String, to: String },
    /// `trace --probe`: a real packet.
    Probe { from: String, to: String },
    /// Start capturing on the node's interfaces.
    CaptureStart(String),
    /// Stop the capture.
    CaptureStop,
    /// Write the capture buffer to a pcapng file.
    CaptureWrite,
}

/// The trace view's state.
#[derive(Debug, Default, Clone)]
pub struct TraceState {
    pub from: Option<String>,
    pub to: Option<String>,
    /// The hop list as `trace` prints it (and the probe's report after it).
    pub lines: Vec<String>,
    /// What is running (`trace`, `probe`), if anything.
    pub running: Option<&'static str>,
}

/// Where the selectable list was drawn, for mouse clicks: its first row
/// on screen, its height and the index of its first visible line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListAt {
    pub top: u16,
    pub height: u16,
    pub offset: usize,
}

/// The dashboard's state.
#[derive(Debug, Default)]
pub struct App {
    /// Views entered, the current one last (never empty once started).
    pub stack: Vec<View>,
    /// The selected line of the current view.
    pub selected: usize,
    pub filter: String,
    pub prompt: Option<Prompt>,
    pub snapshot: Option<Arc<Snapshot>>,
    /// Why there is no (fresh) snapshot: no lab, no permission, ...
    pub error: Option<String>,
    /// A message for the status line (an unknown command, ...).
    pub status: Option<String>,
    /// The last change in the findings, with when it was seen.
    pub last_change: Option<String>,
    /// Work for the loop to start.
    pub jobs: Vec<Job>,
    /// Whether a repair or undo is running.
    pub applying: bool,
    /// The linked view of the object view's object.
    pub linked: Option<Result<LinkedView, String>>,
    pub trace: TraceState,
    /// The running (or last) capture's packets.
    pub capture: Option<Arc<Mutex<Buffer>>>,
    /// Per node, its past repairs (newest last), once read.
    pub history: Option<(String, Result<Vec<Journal>, String>)>,
    /// Set by the drawing code, read by mouse clicks.
    pub list_at: Cell<ListAt>,
    pub quit: bool,
}

impl App {
    pub fn new() -> App {
        App {
            stack: vec![View::Overview],
            ..Default::default()
        }
    }

    /// Takes a new snapshot, noting what changed in the findings.
    pub fn update(&mut self, s: impl Into<Arc<Snapshot>>, now: std::time::SystemTime) {
        let s: Arc<Snapshot> = s.into();
        if let Some(old) = &self.snapshot {
            let changed = super::snapshot::changes(old, &s);
            if !changed.is_empty() {
                self.last_change = Some(format!(
                    "{} {}",
                    super::snapshot::utc_clock(now),
                    changed.join(" ")
                ));
            }
        }
        if let Some(old) = self.snapshot.replace(s) {
            super::snapshot::retire(old);
        }
        self.error = None;
        self.relink();
    }

    pub fn view(&self) -> &View {
        self.stack.last().unwrap_or(&View::Overview)
    }

    fn enter(&mut self, v: View) {
        if self.view() != &v {
            if matches!(self.view(), View::Capture(_)) {
                self.jobs.push(Job::CaptureStop);
            }
            self.stack.push(v);
        }
        self.selected = 0;
        self.filter.clear();
        self.relink();
        if let View::History(n) = self.view().clone() {
            self.jobs.push(Job::History(n));
        }
    }

    fn back(&mut self) {
        if !self.filter.is_empty() {
            self.filter.clear();
        } else if self.stack.len() > 1 {
            if matches!(self.view(), View::Capture(_)) {
                self.jobs.push(Job::CaptureStop);
            }
            self.stack.pop();
            self.selected = 0;
            self.relink();
        }
    }

    /// Computes the object view's linked view from the snapshot.
    fn relink(&mut self) {
        self.linked = match (self.view(), &self.snapshot) {
            (View::Object(kind, name), Some(s)) => Some(resources::linked(
                &s.cluster,
                &s.states,
                &s.findings.to_vec(),
                *kind,
                name,
            )),
            _ => None,
        };
    }

    /// The node names, in the overview's order.
    pub fn node_names(&self) -> Vec<String> {
        self.snapshot
            .as_ref()
            .map(|s| s.nodes.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The resources the resources view shows: of its kind, filtered.
    pub fn shown_resources<'a>(&self, s: &'a Snapshot, kind: Option<Kind>) -> Vec<Listed<'a>> {
        s.listed()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .filter(|r| {
                self.filter.is_empty()
                    || r.name.contains(&self.filter)
                    || r.detail.contains(&self.filter)
                    || r.finding.is_some_and(|f| f.as_str().contains(&self.filter))
            })
            .collect()
    }

    /// Applies a mouse event: the wheel moves, a click selects a line.
    pub fn mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollDown => self.selected = self.selected.saturating_add(3),
            MouseEventKind::ScrollUp => self.selected = self.selected.saturating_sub(3),
            MouseEventKind::Down(crossterm::event::MouseButton::Left) => {
                let at = self.list_at.get();
                if m.row >= at.top && m.row < at.top + at.height {
                    self.selected = at.offset + usize::from(m.row - at.top);
                }
            }
            _ => {}
        }
    }

    /// Applies one key press.
    pub fn key(&mut self, k: KeyEvent) {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(p) = self.prompt.take() {
            self.prompt_key(p, k);
            return;
        }
        self.status = None;
        match k.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.enter(View::Help),
            KeyCode::Char(':') => self.prompt = Some(Prompt::Command(String::new())),
            KeyCode::Char('/') => self.prompt = Some(Prompt::Filter(self.filter.clone())),
            KeyCode::Esc => self.back(),
            KeyCode::Down | KeyCode::Char('j') => self.selected = self.selected.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = self.selected.saturating_add(20),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(20),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::Enter => self.drill(),
            KeyCode::Char('r') => match self.focused_node() {
                Some(n) => self.enter(View::Repair(n)),
                None => self.status = Some("r plans a repair of a node: select one".into()),
            },
            KeyCode::Char('c') => match self.focused_node() {
                Some(n) => {
                    self.enter(View::Capture(n.clone()));
                    self.jobs.push(Job::CaptureStart(n));
                }
                None => self.status = Some("c captures on a node: select one".into()),
            },
            KeyCode::Char('t') => self.trace_from_here(),
            _ => self.view_key(k.code),
        }
    }

    /// Keys that mean something in one view only.
    fn view_key(&mut self, code: KeyCode) {
        match (self.view().clone(), code) {
            (View::Repair(n), KeyCode::Char('a')) => {
                let steps = self
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.plan(&n))
                    .map_or(0, |p| p.steps.len());
                if self.applying {
                    self.status = Some("a repair is running".into());
                } else if steps == 0 {
                    self.status = Some(format!("nothing to repair on {n}"));
                } else {
                    self.prompt = Some(Prompt::Confirm(Confirm::Apply(n)));
                }
            }
            (View::Repair(n), KeyCode::Char('h')) => self.enter(View::History(n)),
            (View::History(n), KeyCode::Char('u')) => {
                let past = match &self.history {
                    Some((node, Ok(past))) if *node == n => past,
                    _ => return,
                };
                // Newest first on screen.
                // The line on screen: the view clamps the selection.
                match past
                    .iter()
                    .rev()
                    .nth(self.selected.min(past.len().saturating_sub(1)))
                {
                    Some(j) if j.undone => {
                        self.status = Some(format!("repair {} is already undone", j.id))
                    }
                    Some(j) if self.applying => {
                        self.status = Some(format!("a repair is running; {} waits", j.id))
                    }
                    Some(j) => {
                        self.prompt = Some(Prompt::Confirm(Confirm::Undo {
                            node: n,
                            id: j.id.clone(),
                        }))
                    }
                    None => self.status = Some(format!("no repairs of {n} recorded")),
                }
            }
            (View::Trace, KeyCode::Char('s')) => self.pick(End::From),
            (View::Trace, KeyCode::Char('d')) => self.pick(End::To),
            (View::Trace, KeyCode::Char('p')) => self.run_trace(true),
            (View::Capture(_), KeyCode::Char(' ')) => {
                if let Some(b) = &self.capture
                    && let Ok(mut b) = b.lock()
                {
                    b.paused = !b.paused;
                }
            }
            (View::Capture(_), KeyCode::Char('v')) => {
                if let Some(b) = &self.capture
                    && let Ok(mut b) = b.lock()
                {
                    b.grouped = !b.grouped;
                }
            }
            (View::Capture(_), KeyCode::Char('w')) => self.jobs.push(Job::CaptureWrite),
            _ => {}
        }
    }

    /// Enter: the selected node, resource or linked object.
    fn drill(&mut self) {
        let Some(s) = self.snapshot.clone() else {
            return;
        };
        match self.view().clone() {
            View::Overview => {
                if let Some(n) = s.nodes.get(self.selected) {
                    self.enter(View::Node(n.name.clone()));
                }
            }
            View::Resources(kind) => {
                let shown = self.shown_resources(&s, kind);
                if let Some(r) = shown.get(self.selected.min(shown.len().saturating_sub(1))) {
                    let v = View::Object(r.kind, r.name.to_string());
                    self.enter(v);
                }
            }
            View::Object(..) => {
                let target = match &self.linked {
                    Some(Ok(v)) => v
                        .lines
                        .get(self.selected.min(v.lines.len().saturating_sub(1)))
                        .and_then(resources::target_of),
                    _ => None,
                };
                match target {
                    Some((Kind::Node, n)) if s.nodes.iter().any(|x| x.name == n) => {
                        self.enter(View::Node(n))
                    }
                    Some((kind, name)) => self.enter(View::Object(kind, name)),
                    None => {}
                }
            }
            View::Trace => self.run_trace(false),
            _ => {}
        }
    }

    /// The node the current view is about (the selected one on the overview).
    fn focused_node(&self) -> Option<String> {
        match self.view() {
            View::Node(n) | View::Repair(n) | View::History(n) | View::Capture(n) => {
                Some(n.clone())
            }
            View::Object(Kind::Node, n) => Some(n.clone()),
            View::Overview => self.node_names().get(self.selected).cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;

    fn press(app: &mut App, keys: &str) {
        for c in keys.chars() {
            let code = match c {
                '\n' => KeyCode::Enter,
                '\x1b' => KeyCode::Esc,
                c => KeyCode::Char(c),
            };
            app.key(KeyEvent {
                code,
                modifiers: KeyModifiers::NONE,
                kind: KeyEventKind::Press,
                state: crossterm::event::KeyEventState::NONE,
            });
        }
    }

    fn app() -> App {
        let mut a = App::new();
        a.snapshot = Some(Arc::new(Snapshot {
            source: "test".into(),
            read_at: None,
            reading_began: None,
            reading_cost: None,
            totals: Default::default(),
            nodes: ["k8s-master-10", "k8s-node-11", "k8s-node-12"]
                .map(|n| {
                    Arc::new(super::super::snapshot::NodeRow {
                        name: n.into(),
                        read: true,
                        pods: 0,
                        lease: None,
                        summary: None,
                        iptables: Vec::new(),
                        via: None,
                        not_read: None,
                        node_findings: [0; 3],
                        proxy_findings: [0; 3],
                    })
                })
                .to_vec(),
            rows_reading: None,
            findings: Default::default(),
            entries: Default::default(),
            plans: Default::default(),
            cluster: Default::default(),
            states: Default::default(),
            resources: Default::default(),
            resource_marks: Default::default(),
            trace_targets: Default::default(),
        }));
        a
    }

    #[test]
    fn enter_drills_into_the_selected_node_and_esc_comes_back() {
        let mut a = app();
        press(&mut a, "jj\n");
        assert_eq!(a.view(), &View::Node("k8s-node-12".into()));
        press(&mut a, "\x1b");
        assert_eq!(a.view(), &View::Overview);
    }

    #[test]
    fn colon_jumps_by_name_and_says_so_when_it_cannot() {
        let mut a = app();
        press(&mut a, ":node node-11\n");
        assert_eq!(a.view(), &View::Node("k8s-node-11".into()));
        press(&mut a, ":node nope\n");
        assert!(a.status.as_deref().unwrap().contains("no node \"nope\""));
        press(&mut a, ":overview\n");
        assert_eq!(a.stack, vec![View::Overview]);
    }

    #[test]
    fn slash_filters_as_it_is_typed_and_esc_clears_it() {
        let mut a = app();
        press(&mut a, "/fdb");
        assert_eq!(a.filter, "fdb");
        press(&mut a, "\n");
        assert_eq!((a.filter.as_str(), a.prompt.is_none()), ("fdb", true));
        press(&mut a, "\x1b");
        assert!(a.filter.is_empty());
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        let mut a = app();
        press(&mut a, "q");
        assert!(a.quit);
        let mut a = app();
        a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(a.quit);
    }
}
