//! The dashboard's state and what each key does to it (pure: no terminal,
//! no I/O). Keys follow k9s and htop: `:` jumps to a view by name, `/`
//! filters, `?` lists the keys, Enter drills down, Esc goes back, `q` or
//! Ctrl-C quits, j/k and the arrows move.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::snapshot::Snapshot;

/// A screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Nodes with their health, and the cluster's findings.
    Overview,
    /// One node's devices and per-peer entries against `expect()`.
    Node(String),
    /// What `repair` would do on a node; `a` applies it after a yes.
    Repair(String),
    /// Every key.
    Help,
}

/// A line being typed at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `:view` — a view by name.
    Command(String),
    /// `/text` — keep the lines containing it.
    Filter(String),
    /// Apply the repair plan of this node? (y/n)
    Confirm(String),
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
    /// A repair the loop is to start (the node), confirmed.
    pub apply: Option<String>,
    /// Whether a repair is running.
    pub applying: bool,
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
    pub fn update(&mut self, s: Snapshot, now: std::time::SystemTime) {
        if let Some(old) = &self.snapshot {
            let changed = super::snapshot::changes(old, &s);
            if !changed.is_empty() {
                let secs = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() % 86_400)
                    .unwrap_or(0);
                self.last_change = Some(format!(
                    "{:02}:{:02}:{:02} UTC {}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    changed.join(" ")
                ));
            }
        }
        self.snapshot = Some(Arc::new(s));
        self.error = None;
    }

    pub fn view(&self) -> &View {
        self.stack.last().unwrap_or(&View::Overview)
    }

    fn enter(&mut self, v: View) {
        if self.view() != &v {
            self.stack.push(v);
        }
        self.selected = 0;
        self.filter.clear();
    }

    fn back(&mut self) {
        if !self.filter.is_empty() {
            self.filter.clear();
        } else if self.stack.len() > 1 {
            self.stack.pop();
            self.selected = 0;
        }
    }

    /// The node names, in the overview's order.
    pub fn node_names(&self) -> Vec<String> {
        self.snapshot
            .as_ref()
            .map(|s| s.nodes.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default()
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
            KeyCode::Enter => {
                if self.view() == &View::Overview
                    && let Some(n) = self.node_names().get(self.selected)
                {
                    self.enter(View::Node(n.clone()));
                }
            }
            KeyCode::Char('r') => {
                if let Some(n) = self.focused_node() {
                    self.enter(View::Repair(n));
                }
            }
            KeyCode::Char('a') => {
                if let View::Repair(n) = self.view().clone() {
                    let steps = self
                        .snapshot
                        .as_ref()
                        .and_then(|s| s.plans.get(&n))
                        .map_or(0, |p| p.steps.len());
                    if self.applying {
                        self.status = Some("a repair is running".into());
                    } else if steps == 0 {
                        self.status = Some(format!("nothing to repair on {n}"));
                    } else {
                        self.prompt = Some(Prompt::Confirm(n));
                    }
                }
            }
            _ => {}
        }
    }

    /// The node the current view is about (the selected one on the overview).
    fn focused_node(&self) -> Option<String> {
        match self.view() {
            View::Node(n) | View::Repair(n) => Some(n.clone()),
            View::Overview => self.node_names().get(self.selected).cloned(),
            View::Help => None,
        }
    }

    fn prompt_key(&mut self, p: Prompt, k: KeyEvent) {
        let (mut text, is_filter) = match p {
            Prompt::Command(t) => (t, false),
            Prompt::Filter(t) => (t, true),
            Prompt::Confirm(node) => {
                if k.code == KeyCode::Char('y') {
                    self.apply = Some(node);
                } else {
                    self.status = Some("nothing changed".into());
                }
                return;
            }
        };
        match k.code {
            KeyCode::Esc => return,
            KeyCode::Enter => {
                if is_filter {
                    self.filter = text;
                    self.selected = 0;
                } else {
                    self.command(text.trim());
                }
                return;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        if is_filter {
            // Incremental: the list narrows while typing.
            self.filter = text.clone();
            self.selected = 0;
        }
        self.prompt = Some(if is_filter {
            Prompt::Filter(text)
        } else {
            Prompt::Command(text)
        });
    }

    /// `:overview`, `:nodes`, `:node NAME`, `:help`, `:q`.
    fn command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("overview" | "nodes" | "findings"), None) => {
                self.stack.truncate(1);
                self.selected = 0;
                self.filter.clear();
            }
            (Some("node" | "no"), Some(name)) => {
                let names = self.node_names();
                match names.iter().find(|n| *n == name || n.ends_with(name)) {
                    Some(n) => self.enter(View::Node(n.clone())),
                    None => {
                        self.status = Some(format!("no node {name:?}; nodes: {}", names.join(", ")))
                    }
                }
            }
            (Some("help"), None) => self.enter(View::Help),
            (Some("repair"), Some(name)) => {
                if let Some(n) = self
                    .node_names()
                    .into_iter()
                    .find(|n| n == name || n.ends_with(name))
                {
                    self.enter(View::Repair(n));
                }
            }
            (Some("q" | "quit"), None) => self.quit = true,
            _ => {
                self.status = Some(format!(
                    "unknown command {line:?}: try :overview, :node NAME, :help, :q"
                ))
            }
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
            nodes: ["k8s-master-10", "k8s-node-11", "k8s-node-12"]
                .map(|n| super::super::snapshot::NodeRow {
                    name: n.into(),
                    read: true,
                    node_findings: [0; 3],
                    proxy_findings: [0; 3],
                })
                .to_vec(),
            findings: Vec::new(),
            entries: Default::default(),
            plans: Default::default(),
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
