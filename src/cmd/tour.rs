//! `knetdoctor lab tour`: one fault end to end on a lab that is up — break
//! a route, see it in `check`, `trace` the broken path, `repair` it (plan,
//! apply), `--undo` the repair, heal — printing each command before it runs
//! it, so that a newcomer learns the tool by watching it. The commands are
//! this very binary run as a person would type them; on a terminal the
//! tour waits for Enter before each, elsewhere (CI) it runs straight on.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::{Command, Stdio};

use knetdoctor::error::{Error, Result};
use knetdoctor::lab::{self, LabState, topology::PodRole};
use knetdoctor::repair::session::Session;

/// The exit code a step must end with for the tour to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// 0: done, healthy, reachable.
    Ok,
    /// 1: findings, unreachable, a plan not applied.
    Findings,
}

/// One step: why it is run, and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    why: String,
    args: Vec<String>,
    ends: Ends,
}

/// The lab's names the tour works on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cast {
    lab: String,
    /// The node the route is deleted on.
    node: String,
    /// The node whose pod CIDR it led to (`lab break`'s default peer).
    peer: String,
    /// A pod on `node`, and an nginx pod on `peer` (`ns/name`).
    from: String,
    to: String,
}

impl Cast {
    /// The tour's actors in `state`'s lab.
    fn of(state: &LabState) -> Result<Cast> {
        let topo = &state.topology;
        let node = lab::DEFAULT_FAULT_NODE.to_string();
        let at = topo
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| {
                Error::usage(
                    format!("lab {} has no node {node}", state.topology.params.name),
                    Some("the tour needs the seed lab's nodes: `knetdoctor lab up`".to_string()),
                )
            })?;
        let peer = topo.nodes[(at + 1) % topo.nodes.len()].name.clone();
        let pod_on = |n: &str, role: Option<PodRole>| {
            topo.pods
                .iter()
                .find(|p| p.node == n && role.is_none_or(|r| p.role == r))
                .map(|p| format!("{}/{}", p.namespace, p.name))
        };
        let missing = |n: &str| {
            Error::usage(
                format!(
                    "lab {} has no pod on {n} to trace",
                    state.topology.params.name
                ),
                Some("bring the lab up again: `knetdoctor lab down && knetdoctor lab up`".into()),
            )
        };
        Ok(Cast {
            lab: state.topology.params.name.clone(),
            from: pod_on(&node, Some(PodRole::Nginx))
                .or_else(|| pod_on(&node, None))
                .ok_or_else(|| missing(&node))?,
            to: pod_on(&peer, Some(PodRole::Nginx))
                .or_else(|| pod_on(&peer, None))
                .ok_or_else(|| missing(&peer))?,
            node,
            peer,
        })
    }

    /// `--lab NAME` (`--name NAME` for `lab` commands), as [`lab_flag`].
    fn flag(&self, lab_command: bool) -> Vec<String> {
        let flag = if lab_command { "--name" } else { "--lab" };
        lab_flag(flag, &self.lab).into_iter().flatten().collect()
    }

    fn step(&self, why: String, args: &[&str], ends: Ends) -> Step {
        let lab_command = args.first() == Some(&"lab");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(self.flag(lab_command));
        Step { why, args, ends }
    }
}

/// The tour up to the repair; [`after_repair`] goes on once the repair's
/// journal ID is known.
fn until_repair(c: &Cast) -> Vec<Step> {
    let (node, peer) = (c.node.as_str(), c.peer.as_str());
    vec![
        c.step(
            format!(
                "Break something: delete {node}'s flannel.1 route to {peer}'s pod CIDR, \
                 as a stray `ip route del` or a flanneld that died mid-sync would."
            ),
            &[
                "lab",
                "break",
                "route-missing",
                "--node",
                node,
                "--peer",
                peer,
            ],
            Ends::Ok,
        ),
        c.step(
            "check compares every node's kernel with what flannel and kube-proxy would \
             program there: the missing route is a finding, with the evidence and its repair."
                .into(),
            &["check"],
            Ends::Findings,
        ),
        c.step(
            format!(
                "trace follows a packet from a pod on {node} to a pod on {peer} hop by hop \
                 and names the hop that drops it."
            ),
            &["trace", &c.from, &c.to],
            Ends::Findings,
        ),
        c.step(
            "repair without --apply only plans: each change, the finding it fixes and what \
             it replaces on the node now. Nothing is changed."
                .into(),
            &["repair", "--node", node],
            Ends::Findings,
        ),
        c.step(
            "--apply makes the changes over rtnetlink inside the node's namespace, each \
             journaled before it is sent (--yes: no question asked), then checks again."
                .into(),
            &["repair", "--node", node, "--apply", "--yes"],
            Ends::Ok,
        ),
        c.step(
            "The same trace: the path is whole again.".into(),
            &["trace", &c.from, &c.to],
            Ends::Ok,
        ),
    ]
}

/// The rest: undo the repair `id` (the fault is back), heal, check.
fn after_repair(c: &Cast, id: &str) -> Vec<Step> {
    let node = c.node.as_str();
    vec![
        c.step(
            "--undo puts back exactly what that repair replaced, newest first, journaled the \
             same way: here, the fault itself."
                .into(),
            &["repair", "--node", node, "--undo", id],
            Ends::Ok,
        ),
        c.step(
            "lab heal undoes every fault `lab break` injected.".into(),
            &["lab", "heal"],
            Ends::Ok,
        ),
        c.step(
            "And check agrees: the lab is as it was before the tour.".into(),
            &["check"],
            Ends::Ok,
        ),
    ]
}

/// Runs the tour on lab `name`; 0 when every step ended as it should.
pub fn run(name: &str) -> Result<u8> {
    let state = LabState::require(name)?;
    if !state.faults.is_empty() {
        return Err(Error::usage(
            format!("lab {name} already has faults injected"),
            Some(format!(
                "the tour starts from a healthy lab: `knetdoctor lab heal{}` first",
                flag_text("--name", name)
            )),
        ));
    }
    let cast = Cast::of(&state)?;
    let me = std::env::current_exe().map_err(|e| {
        Error::env(
            format!("cannot find knetdoctor's own binary: {e}"),
            Some("run the tour from the built binary".to_string()),
        )
    })?;
    let paced = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    say(&format!(
        "A tour of knetdoctor on lab {name}: one broken route from fault to repair, {} steps.\n",
        until_repair(&cast).len() + after_repair(&cast, "ID").len()
    ));
    for step in until_repair(&cast) {
        if !perform(&me, &step, paced)? {
            return Ok(1);
        }
    }
    let id = newest_repair(&state, &cast.node)?;
    for step in after_repair(&cast, &id) {
        if !perform(&me, &step, paced)? {
            return Ok(1);
        }
    }
    say(&format!(
        "\nThat was the whole loop. Next: `knetdoctor{}` opens the dashboard (q quits); \
         `knetdoctor lab break --list` lists the other {} faults.\n",
        flag_text("--lab", name),
        lab::Fault::all().len().saturating_sub(1)
    ));
    Ok(0)
}

/// `FLAG NAME` for a lab that is not the default one, which every
/// command reads without a flag.
fn lab_flag(flag: &str, name: &str) -> Option<[String; 2]> {
    (name != knetdoctor::lab::DEFAULT_NAME).then(|| [flag.to_string(), name.to_string()])
}

/// [`lab_flag`] as the tour's own lines print it (` FLAG NAME` or nothing).
fn flag_text(flag: &str, name: &str) -> String {
    lab_flag(flag, name).map_or_else(String::new, |f| format!(" {}", f.join(" ")))
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints the step, waits for Enter when `paced`, runs it; false when it
/// ended otherwise than it should (the tour stops there, saying how to
/// put the lab back) or the person stopped the tour.
fn perform(me: &std::path::Path, step: &Step, paced: bool) -> Result<bool> {
    say(&format!(
        "\n# {}\n$ knetdoctor {}\n",
        step.why,
        step.args.join(" ")
    ));
    if paced {
        say("  (Enter runs it, q then Enter stops the tour) ");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::env(format!("cannot read the terminal: {e}"), None))?;
        if line.trim() == "q" {
            say("tour stopped; `knetdoctor lab heal` puts back any fault it injected\n");
            return Ok(false);
        }
    }
    let status = Command::new(me)
        .args(&step.args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            Error::env(
                format!("cannot run {}: {e}", me.display()),
                Some("run the tour from the built binary".to_string()),
            )
        })?;
    let wanted = match step.ends {
        Ends::Ok => 0,
        Ends::Findings => 1,
    };
    if status.code() == Some(wanted) {
        return Ok(true);
    }
    say(&format!(
        "\nthe tour expected exit {wanted} here and got {}: it stops; \
         `knetdoctor lab heal` puts back any fault it injected\n",
        status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| c.to_string())
    ));
    Ok(false)
}

/// The ID of the newest repair of `node` (the one the tour just applied).
fn newest_repair(state: &LabState, node: &str) -> Result<String> {
    let target = knetdoctor::access::Source {
        lab: state.topology.params.name.clone(),
        ..Default::default()
    }
    .target()?;
    let session = Session::open(target, node, Default::default())?;
    session
        .history()?
        .into_iter()
        .filter(|j| !j.undone)
        .map(|j| j.id)
        .max()
        .ok_or_else(|| {
            Error::env(
                format!("the repair of {node} left no journal"),
                Some(format!(
                    "`knetdoctor repair --node {node} --history` lists what there is"
                )),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(lab: &str) -> Cast {
        Cast {
            lab: lab.into(),
            node: "k8s-node-12".into(),
            peer: "k8s-master-10".into(),
            from: "test-svc-ns/a".into(),
            to: "test-svc-ns/b".into(),
        }
    }

    /// Every step is a command line this binary accepts, with the lab's
    /// flag where the lab is not the default one.
    #[test]
    fn every_step_parses_and_names_the_lab() {
        use clap::Parser;
        for c in [cast("seed"), cast("demo2")] {
            let steps: Vec<Step> = until_repair(&c)
                .into_iter()
                .chain(after_repair(&c, "00000000000000000001-1"))
                .collect();
            assert_eq!(steps.len(), 9);
            for s in &steps {
                let argv = std::iter::once("knetdoctor".to_string()).chain(s.args.clone());
                let parsed = crate::cli::Cli::try_parse_from(argv);
                assert!(parsed.is_ok(), "{:?}: {:?}", s.args, parsed.err());
                let named = s
                    .args
                    .windows(2)
                    .any(|w| (w[0] == "--lab" || w[0] == "--name") && w[1] == c.lab);
                assert_eq!(named, c.lab != "seed", "{:?}", s.args);
            }
            // Broken, seen, planned, applied, whole again, undone, healed.
            let ends: Vec<Ends> = steps.iter().map(|s| s.ends).collect();
            use Ends::*;
            assert_eq!(ends, [Ok, Findings, Findings, Findings, Ok, Ok, Ok, Ok, Ok]);
        }
    }
}
