//! What typed lines do: `:` commands, the `/` filter as it is typed, the
//! y/n of a confirmation, and the trace view's fuzzy picker.

use crossterm::event::{KeyCode, KeyEvent};

use super::{App, Confirm, End, Job, Prompt, TraceState, View};
use crate::tui::resources::Kind;

impl App {
    /// `t`: a trace starting at the selected object; the destination is
    /// picked next.
    pub(super) fn trace_from_here(&mut self) {
        let from = match (self.view().clone(), &self.snapshot) {
            (View::Object(k, n), _) if k != Kind::Ingress => Some(n),
            (View::Resources(kind), Some(s)) => {
                let s = s.clone();
                let shown = self.shown_resources(&s, kind);
                shown
                    .get(self.selected)
                    .filter(|r| r.kind != Kind::Ingress)
                    .map(|r| r.name.to_string())
            }
            (View::Node(n), _) => Some(n),
            (View::Overview, _) => self.node_names().get(self.selected).cloned(),
            _ => None,
        };
        if let Some(from) = from {
            self.trace = TraceState {
                from: Some(from),
                ..Default::default()
            };
        }
        self.enter(View::Trace);
        self.pick(if self.trace.from.is_some() {
            End::To
        } else {
            End::From
        });
    }

    pub(super) fn pick(&mut self, end: End) {
        let matches = self
            .snapshot
            .as_ref()
            .map(|s| crate::tui::pick::rank(&s.trace_targets, ""))
            .unwrap_or_default();
        self.prompt = Some(Prompt::Pick {
            end,
            query: String::new(),
            matches,
            selected: 0,
        });
    }

    pub(super) fn run_trace(&mut self, probe: bool) {
        let (Some(from), Some(to)) = (self.trace.from.clone(), self.trace.to.clone()) else {
            self.status = Some("pick both ends first: s the source, d the destination".into());
            return;
        };
        if self.trace.running.is_some() {
            self.status = Some("a trace is running".into());
            return;
        }
        self.trace.running = Some(if probe { "probe" } else { "trace" });
        self.jobs.push(if probe {
            Job::Probe { from, to }
        } else {
            Job::Trace { from, to }
        });
    }

    pub(super) fn prompt_key(&mut self, p: Prompt, k: KeyEvent) {
        let (mut text, is_filter) = match p {
            Prompt::Command(t) => (t, false),
            Prompt::Filter(t) => (t, true),
            Prompt::Confirm(c) => {
                if k.code == KeyCode::Char('y') {
                    self.jobs.push(match c {
                        Confirm::Apply(n) => Job::Repair(n),
                        Confirm::Undo { node, id } => Job::Undo { node, id },
                    });
                    self.applying = true;
                } else {
                    self.status = Some("nothing changed".into());
                }
                return;
            }
            Prompt::Pick {
                end,
                query,
                matches,
                selected,
            } => return self.pick_key(end, query, matches, selected, k),
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

    /// A key in the trace picker: typing narrows, arrows choose, Enter takes.
    pub(super) fn pick_key(
        &mut self,
        end: End,
        mut query: String,
        mut matches: Vec<usize>,
        mut selected: usize,
        k: KeyEvent,
    ) {
        let Some(s) = self.snapshot.clone() else {
            return;
        };
        match k.code {
            KeyCode::Esc => return,
            KeyCode::Enter => {
                let Some(t) = matches
                    .get(selected)
                    .map(|&i| s.trace_targets[i].text.clone())
                else {
                    self.status = Some(format!("nothing matches {query:?}"));
                    self.prompt = Some(Prompt::Pick {
                        end,
                        query,
                        matches,
                        selected,
                    });
                    return;
                };
                match end {
                    End::From => self.trace.from = Some(t),
                    End::To => self.trace.to = Some(t),
                }
                self.trace.lines.clear();
                if self.trace.from.is_none() {
                    self.pick(End::From);
                } else if self.trace.to.is_none() {
                    self.pick(End::To);
                } else {
                    self.run_trace(false);
                }
                return;
            }
            KeyCode::Down => selected = (selected + 1).min(matches.len().saturating_sub(1)),
            KeyCode::Up => selected = selected.saturating_sub(1),
            KeyCode::Backspace => {
                query.pop();
                matches = crate::tui::pick::rank(&s.trace_targets, &query);
                selected = 0;
            }
            KeyCode::Char(c) => {
                query.push(c);
                matches = crate::tui::pick::rank(&s.trace_targets, &query);
                selected = 0;
            }
            _ => {}
        }
        self.prompt = Some(Prompt::Pick {
            end,
            query,
            matches,
            selected,
        });
    }

    /// `:overview`, `:node NAME`, `:pods`, `:svc [NAME]`, `:ingress`, `:dns`,
    /// `:res`, `:trace`, `:capture NODE`, `:repair NODE`, `:history NODE`,
    /// `:help`, `:q`.
    pub(super) fn command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let node_named = |app: &App, name: &str| {
            app.node_names()
                .into_iter()
                .find(|n| n == name || n.ends_with(name))
        };
        match (words.next(), words.next()) {
            (Some("overview" | "findings"), None) => {
                if matches!(self.view(), View::Capture(_)) {
                    self.jobs.push(Job::CaptureStop);
                }
                self.stack.truncate(1);
                self.selected = 0;
                self.filter.clear();
            }
            (Some("node" | "no"), Some(name)) => match node_named(self, name) {
                Some(n) => self.enter(View::Node(n)),
                None => {
                    self.status = Some(format!(
                        "no node {name:?}; nodes: {}",
                        self.node_names().join(", ")
                    ))
                }
            },
            (Some("res" | "resources" | "all"), None) => self.enter(View::Resources(None)),
            (Some(word), None) if Kind::from_word(word).is_some() => {
                self.enter(View::Resources(Kind::from_word(word)))
            }
            (Some(word), Some(name)) if Kind::from_word(word).is_some() => {
                let kind = Kind::from_word(word);
                let found = self.snapshot.as_ref().and_then(|s| {
                    let of_kind = || s.resources.rows().filter(|r| Some(r.kind) == kind);
                    of_kind()
                        .find(|r| r.name == name)
                        .or_else(|| of_kind().find(|r| r.name.ends_with(&format!("/{name}"))))
                        .map(|r| (r.kind, r.name.clone()))
                });
                match found {
                    Some((k, n)) => self.enter(View::Object(k, n)),
                    None => {
                        self.status = Some(format!("no {word} {name:?}: try :{word} to list them"))
                    }
                }
            }
            (Some("trace" | "tr"), None) => {
                self.enter(View::Trace);
                if self.trace.from.is_none() {
                    self.pick(End::From);
                }
            }
            (Some(v @ ("capture" | "repair" | "history")), Some(name)) => {
                match node_named(self, name) {
                    Some(n) if v == "capture" => {
                        self.enter(View::Capture(n.clone()));
                        self.jobs.push(Job::CaptureStart(n));
                    }
                    Some(n) if v == "repair" => self.enter(View::Repair(n)),
                    Some(n) => self.enter(View::History(n)),
                    None => self.status = Some(format!("no node {name:?}")),
                }
            }
            (Some("help"), None) => self.enter(View::Help),
            (Some("q" | "quit"), None) => self.quit = true,
            _ => {
                self.status = Some(format!(
                    "unknown command {line:?}: try :overview, :pods, :svc, :ingress, :dns, :node NAME, :trace, :help, :q"
                ))
            }
        }
    }
}
