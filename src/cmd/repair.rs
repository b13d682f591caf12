//! `knetdoctor repair`: the face of a repair session — the plan, asked for
//! and applied, undone, or the node's past repairs listed — what it prints
//! and the exit code.

use std::io::Write as _;

use knetdoctor::check::text::action_line;
use knetdoctor::error::Result;
use knetdoctor::repair::journal::{self, Journal};
use knetdoctor::repair::session::{Applied, Session};
use knetdoctor::repair::{Options, Plan};

use super::{emit, source};
use crate::cli::{Output, RepairArgs, RepairInclude};

fn out(text: &str) {
    super::out(text)
}

/// Runs `repair` and returns its exit code: 0 done or clean, 1 something
/// left (a plan not applied, a failed or declined repair or undo).
pub fn run(a: RepairArgs) -> Result<u8> {
    let target = source(&a.source).target()?;
    let opts = Options {
        only: a.only.clone(),
        include_kube_proxy: a.include.contains(&RepairInclude::KubeProxy),
    };
    let session = Session::open(target, &a.node, opts)?;
    if a.history {
        history(&a, &session)?;
        return Ok(0);
    }
    if let Some(id) = &a.undo {
        return Ok(report_undo(&session.undo(id)?));
    }
    if !a.apply {
        let planning = super::progress::Spinner::start("reading the node and planning");
        let planned = session.plan()?;
        drop(planning);
        let plan = &planned.plan;
        // A plan made on a reading the API server refused in part fixes
        // only what could be judged: said after it, and never "clean".
        let in_part = knetdoctor::model::reading::read_in_part(&planned.cluster.unread);
        match a.output {
            Output::Json | Output::Yaml => emit(a.output, plan),
            Output::Text => out(&plan.text()),
            Output::Wide => out(&plan.text_wide()),
        }
        if let (Some(line), Output::Text | Output::Wide) = (&in_part, a.output) {
            out(&format!("{line}\n"));
        }
        return Ok(match (plan.is_clean(), in_part) {
            (false, _) => 1,
            (true, Some(_)) => knetdoctor::check::INCOMPLETE,
            (true, None) => 0,
        });
    }
    match session.apply(|plan| a.yes || confirmed(plan))? {
        Applied::NothingToDo(plan) => {
            out(&format!("{}: nothing to repair\n{}", a.node, plan.text()));
            Ok(if plan.is_clean() { 0 } else { 1 })
        }
        Applied::Declined => {
            out("nothing changed\n");
            Ok(1)
        }
        Applied::Failed(j) => Ok(report_failure(&j)),
        Applied::Done { journal: j, left } => {
            let left: Vec<&str> = left.iter().map(|id| id.as_str()).collect();
            out(&format!(
                "repair {}: {} action(s) applied on {}; journal {}\n{}",
                j.id,
                j.entries.len(),
                a.node,
                session.journal_place(&j.id)?,
                if left.is_empty() {
                    "checked again: the findings it targeted are gone\n".to_string()
                } else {
                    format!("checked again: still there: {}\n", left.join(", "))
                }
            ));
            Ok(if left.is_empty() { 0 } else { 1 })
        }
    }
}

/// Says what an undo put back; exit 1 when it stopped part-way.
fn report_undo(j: &Journal) -> u8 {
    let restored = j
        .entries
        .iter()
        .filter(|e| e.restore == journal::Restore::Restored)
        .count();
    let Some((e, why)) = j.entries.iter().find_map(|e| match &e.restore {
        journal::Restore::Failed(m) => Some((e, m)),
        _ => None,
    }) else {
        out(&format!(
            "repair {} undone: {} change(s) put back on {}\n",
            j.id, restored, j.node
        ));
        return 0;
    };
    let listed: String = j
        .entries
        .iter()
        .rev()
        .filter(|e| e.restore == journal::Restore::Restored)
        .take(20)
        .map(|e| format!("  put back: {}\n", action_line(&e.action)))
        .collect();
    let left = j
        .entries
        .iter()
        .filter(|e| e.applied && e.restore != journal::Restore::Restored)
        .count();
    let _ = writeln!(
        anstream::stderr(),
        "undo of repair {} stopped: {} change(s) put back, {} left\n{}  refused: {} ({})\nfix the cause, then `knetdoctor repair --node {} --undo {}` puts back the rest",
        j.id,
        restored,
        left,
        listed,
        action_line(&e.action),
        why,
        j.node,
        j.id
    );
    1
}

fn history(a: &RepairArgs, session: &Session) -> Result<()> {
    let past = session.history()?;
    if !a.output.is_text() {
        emit(a.output, &past);
        return Ok(());
    }
    let mut o = String::new();
    for j in &past {
        o.push_str(&j.summary());
        o.push('\n');
    }
    if past.is_empty() {
        o.push_str(&format!(
            "no repairs of {} recorded in {}\n",
            a.node,
            session.journals_place()?
        ));
    }
    out(&o);
    Ok(())
}

/// On a terminal, shows the plan and asks; elsewhere `--yes` is the answer.
fn confirmed(plan: &Plan) -> bool {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return true;
    }
    out(&plan.text());
    eprint!(
        "apply these {} action(s) to {}? [y/N] ",
        plan.steps.len(),
        plan.node
    );
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    answer.trim().eq_ignore_ascii_case("y")
}

/// Says which actions were applied and which failed; exit 1.
fn report_failure(j: &Journal) -> u8 {
    let Some(failed) = j.entries.iter().find(|e| e.error.is_some()) else {
        return 1;
    };
    const SHOWN: usize = 20;
    let applied = j.entries.iter().filter(|e| e.applied).count();
    let mut listed: String = j
        .entries
        .iter()
        .filter(|e| e.applied)
        .take(SHOWN)
        .map(|e| format!("  applied: {}\n", action_line(&e.action)))
        .collect();
    if applied > SHOWN {
        listed.push_str(&format!(
            "  ... and {} more (`--history -o json`)\n",
            applied - SHOWN
        ));
    }
    let _ = writeln!(
        anstream::stderr(),
        "repair {} stopped: {} of {} applied\n{}  failed: {} ({})\nundo the applied part with `knetdoctor repair --node {} --undo {}`",
        j.id,
        applied,
        j.entries.len(),
        listed,
        action_line(&failed.action),
        failed.error.clone().unwrap_or_default(),
        j.node,
        j.id
    );
    1
}
