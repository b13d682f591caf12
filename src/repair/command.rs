//! `knetdoctor repair`: reads the node and the cluster, plans, and — asked
//! to — applies the plan, re-checks the node, undoes a past repair or lists
//! them. The face of this module: what it prints and the exit code.

use std::io::Write as _;
use std::path::PathBuf;

use super::apply;
use super::journal::{self, Journal};
use super::plan::{Options, Plan, plan};
use crate::check::text::action_line;
use crate::cli::{Output, RepairArgs, RepairInclude};
use crate::dataplane::Netns;
use crate::error::{Error, Result};
use crate::inspect;
use crate::model::{ClusterNetwork, expect};

fn out(text: &str) {
    let _ = write!(anstream::stdout(), "{text}");
}

fn json(value: &impl serde::Serialize) {
    let _ = writeln!(
        anstream::stdout(),
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// Where the node's namespace and journal are: a lab node's, or this
/// machine's when it is the node (reading a bundle or a live cluster).
fn locate(a: &RepairArgs) -> (Option<Netns>, PathBuf) {
    match inspect::resolve_node(Some(&a.node), None, &a.source.lab) {
        Ok(src) if a.source.bundle.is_none() && a.source.live().is_none() => (
            Some(src.netns),
            crate::lab::state::lab_dir(&a.source.lab)
                .join("repair")
                .join(&a.node),
        ),
        _ => {
            let here = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy() == a.node.as_str())
                .unwrap_or(false);
            (
                here.then_some(Netns::Current),
                journal::journal_dir(&a.node),
            )
        }
    }
}

/// The node's findings, read now, and the plan that fixes them.
struct Planned {
    cluster: crate::model::Cluster,
    state: crate::dataplane::NodeState,
    plan: Plan,
}

/// Reads the cluster and the nodes and plans `a.node`'s repair.
fn plan_now(target: &inspect::Target, a: &RepairArgs) -> Result<Planned> {
    let cluster = target.cluster()?;
    let nodes = target.node_states(None)?;
    let Some(state) = nodes
        .iter()
        .find(|(n, _)| *n == a.node)
        .map(|(_, s)| s.clone())
    else {
        let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::usage(
            format!("no node {:?} in this cluster", a.node),
            Some(format!("nodes: {}", names.join(", "))),
        ));
    };
    let findings = crate::check::run(&cluster, &nodes);
    let expected = ClusterNetwork::from_cluster(&cluster)
        .map(|net| expect::iptables(&cluster, &a.node, &net))
        .unwrap_or_default();
    let opts = Options {
        only: a.only.clone(),
        include_kube_proxy: a.include.contains(&RepairInclude::KubeProxy),
    };
    let plan = plan(&a.node, &findings, &state, &expected, &opts);
    Ok(Planned {
        cluster,
        state,
        plan,
    })
}

/// Runs `repair` and returns its exit code: 0 done or clean, 1 something
/// left (a plan not applied, a failed or declined repair or undo).
pub fn run(a: RepairArgs) -> Result<u8> {
    let (netns, dir) = locate(&a);
    if a.history {
        history(&a, &dir);
        return Ok(0);
    }
    let need_netns = || {
        netns.clone().ok_or_else(|| {
            Error::env(
                format!("{} is neither a lab node nor this machine", a.node),
                Some("run the repair on the node itself".to_string()),
            )
        })
    };
    if let Some(id) = &a.undo {
        let ns = need_netns()?;
        let _lock = journal::lock(&dir)?;
        let j = apply::undo(&ns, &dir, id)?;
        return Ok(report_undo(&j));
    }
    // An --apply takes the node's lock before it reads anything: what it
    // journals as "before" is then what it changes, never a state another
    // repair has since replaced.
    let lock = if a.apply {
        need_netns()?;
        Some(journal::lock(&dir)?)
    } else {
        None
    };
    let target =
        inspect::Target::from_flags(a.source.bundle.clone(), &a.source.lab, a.source.live())?;
    let Planned { plan, .. } = plan_now(&target, &a)?;
    if !a.apply {
        match a.output {
            Output::Json => json(&plan),
            Output::Text => out(&plan.text()),
        }
        return Ok(if plan.is_clean() { 0 } else { 1 });
    }
    if plan.is_empty() {
        out(&format!("{}: nothing to repair\n{}", a.node, plan.text()));
        return Ok(if plan.is_clean() { 0 } else { 1 });
    }
    refuse_unsupported(&plan)?;
    let ns = need_netns()?;
    if !a.yes && !confirmed(&plan) {
        out("nothing changed\n");
        return Ok(1);
    }
    #[cfg(debug_assertions)]
    apply::test_hook::pause("planned");
    // The node as it is now: something other than a repair (flanneld, a
    // person) may have changed it while the plan was read or shown.
    let now = plan_now(&target, &a)?;
    if now
        .plan
        .steps
        .iter()
        .map(|s| &s.action)
        .ne(plan.steps.iter().map(|s| &s.action))
    {
        return Err(Error::env(
            format!(
                "{} changed since the plan was made ({} action(s) planned, {} needed now); nothing was changed",
                a.node,
                plan.steps.len(),
                now.plan.steps.len()
            ),
            Some(format!(
                "look at the new plan with `knetdoctor repair --node {}`, then apply it",
                a.node
            )),
        ));
    }
    let j = apply::apply(&ns, &a.node, &now.plan.steps, &now.state, &dir)?;
    if let Some(code) = report_failure(&j) {
        return Ok(code);
    }
    // Re-read the node: the findings the plan targeted must be gone.
    let after = crate::check::run(&now.cluster, &target.node_states(None)?);
    drop(lock);
    let targeted: Vec<crate::check::FindingId> = plan.steps.iter().map(|s| s.finding).collect();
    let left: Vec<&str> = after
        .iter()
        .filter(|f| f.node.as_deref() == Some(a.node.as_str()) && targeted.contains(&f.id))
        .map(|f| f.id.as_str())
        .collect();
    out(&format!(
        "repair {}: {} action(s) applied on {}; journal {}\n{}",
        j.id,
        j.entries.len(),
        a.node,
        dir.join(format!("{}.json", j.id)).display(),
        if left.is_empty() {
            "checked again: the findings it targeted are gone\n".to_string()
        } else {
            format!("checked again: still there: {}\n", left.join(", "))
        }
    ));
    Ok(if left.is_empty() { 0 } else { 1 })
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

fn history(a: &RepairArgs, dir: &std::path::Path) {
    let past = journal::history(dir);
    if a.output == Output::Json {
        return json(&past);
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
            dir.display()
        ));
    }
    out(&o);
}

/// A plan with a step `--apply` does not make is refused before anything
/// changes.
fn refuse_unsupported(plan: &Plan) -> Result<()> {
    let unsupported: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| !apply::supported(s))
        .map(|s| action_line(&s.action))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Error::usage(
        format!(
            "this plan has actions --apply cannot make: {}",
            unsupported.join("; ")
        ),
        Some("leave them out with --only and make them by hand".to_string()),
    ))
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

/// Says which actions were applied and which failed; `Some(1)` if one did.
fn report_failure(j: &Journal) -> Option<u8> {
    let failed = j.entries.iter().find(|e| e.error.is_some())?;
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
    Some(1)
}
