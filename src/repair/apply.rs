//! Carrying out a repair plan on a node, inside the node's network
//! namespace: each action through the dataplane writer (rtnetlink, or
//! `iptables-restore --noflush` for chains), with the journal written
//! before the first change and progress recorded after each one. `undo`
//! puts back exactly what the journal recorded, newest change first.

use std::net::IpAddr;

use std::path::Path;

use super::iptables::{ChainsRestore, restore_tool};
use super::journal::{Entry, Journal};
use super::pipeline;
use super::plan::{Before, Step, before};
use crate::check::RepairAction;
use crate::dataplane::write::Writer;
use crate::dataplane::{Netns, NodeState};
use crate::error::{Error, Result};

/// Whether `--apply` can carry this step out; a plan with others is
/// refused whole, before anything changes.
pub fn supported(s: &Step) -> bool {
    match &s.action {
        RepairAction::IptablesChains { .. } => s.iptables.is_some(),
        RepairAction::IptablesPolicy { .. } | RepairAction::Manual { .. } => false,
        _ => true,
    }
}

/// What the journal records for step `s` before it is made.
fn journaled(s: &Step, state: &NodeState) -> Before {
    match (&s.action, &s.iptables) {
        (RepairAction::IptablesChains { .. }, Some(r)) => Before::Chains {
            backend: r.backend.clone(),
            restore: r.undo.clone(),
        },
        _ => before(&s.action, state),
    }
}

/// Applies `steps` in order inside `netns`, the journal in `dir` written
/// before the first change; stops at the first failure. Returns the
/// journal either way.
pub fn apply(
    netns: &Netns,
    node: &str,
    steps: &[Step],
    state: &NodeState,
    dir: &Path,
) -> Result<Journal> {
    let entries = steps
        .iter()
        .map(|s| Entry {
            action: s.action.clone(),
            finding: s.finding.clone(),
            before: journaled(s, state),
            applied: false,
            error: None,
        })
        .collect();
    let t = std::time::Instant::now();
    let mut j = Journal::new(node, entries);
    j.save(dir)?;
    tracing::debug!("journal {} written in {:?}", j.id, t.elapsed());
    let mut log = j.progress(dir)?;
    let actions: Vec<RepairAction> = j.entries.iter().map(|e| e.action.clone()).collect();
    let mut i = 0;
    let mut failed = false;
    while i < actions.len() && !failed {
        // A run of overlay entries goes out pipelined; a run of anything
        // else one change at a time, each after the one before answered.
        let overlay = pipeline::pipelined(&actions[i]);
        let end = (i..actions.len())
            .find(|&k| pipeline::pipelined(&actions[k]) != overlay)
            .unwrap_or(actions.len());
        log.attempt(i, end)?;
        let mut record = |(k, outcome): pipeline::Outcome| -> Result<()> {
            let e = &mut j.entries[k];
            match outcome {
                None => log.unsent(k)?,
                Some(Ok(())) => {
                    e.applied = true;
                    log.record(k, None)?;
                }
                Some(Err(msg)) => {
                    log.record(k, Some(&msg))?;
                    e.error = Some(msg);
                    failed = true;
                }
            }
            Ok(())
        };
        if overlay {
            let run = (i..end).map(|k| (k, actions[k].clone())).collect();
            pipeline::run(netns, run, &mut record)?;
        } else {
            let run: Vec<(usize, RepairAction, Option<ChainsRestore>)> = (i..end)
                .map(|k| (k, actions[k].clone(), steps[k].iptables.clone()))
                .collect();
            let outcomes = Writer::run(netns, move |w| async move {
                let mut out = Vec::with_capacity(run.len());
                let mut failed = false;
                for (k, action, chains) in &run {
                    if failed {
                        out.push((*k, None));
                        continue;
                    }
                    let r = make(&w, action, chains.as_ref()).await;
                    failed = r.is_err();
                    out.push((*k, Some(r.map_err(|e| e.to_string()))));
                }
                Ok(out)
            })?;
            for o in outcomes {
                record(o)?;
            }
        }
        log.flush()?;
        i = end;
    }
    tracing::debug!("changes made after {:?}", t.elapsed());
    Ok(j)
}

/// Puts back what journal `id` recorded, newest applied change first.
pub fn undo(netns: &Netns, dir: &Path, id: &str) -> Result<Journal> {
    let mut j = Journal::load(dir, id)?;
    if j.undone {
        return Err(Error::usage(
            format!("repair {id} was already undone"),
            Some("`repair --history` lists the repairs".into()),
        ));
    }
    let applied: Vec<(RepairAction, Before)> = j
        .entries
        .iter()
        .rev()
        .filter(|e| e.applied)
        .map(|e| (e.action.clone(), e.before.clone()))
        .collect();
    Writer::run(netns, move |w| async move {
        for (action, before) in &applied {
            restore(&w, action, before).await?;
        }
        Ok(())
    })?;
    j.undone = true;
    j.save(dir)?;
    Ok(j)
}

fn v4(s: &str) -> Result<std::net::Ipv4Addr> {
    s.parse()
        .map_err(|_| Error::usage(format!("bad IPv4 address {s:?}"), None))
}

fn ip(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| Error::usage(format!("bad IP address {s:?}"), None))
}

/// Makes one change.
pub(super) async fn make(
    w: &Writer,
    a: &RepairAction,
    chains: Option<&ChainsRestore>,
) -> Result<()> {
    match a {
        RepairAction::NeighReplace { dev, ip: at, mac } => w.neigh_replace(dev, ip(at)?, mac),
        RepairAction::FdbReplace { dev, mac, dst } => w.fdb_replace(dev, mac, ip(dst)?),
        RepairAction::FdbDelete { dev, mac, .. } => w.fdb_del(dev, mac).await,
        RepairAction::RouteReplace {
            dst,
            gateway,
            dev,
            onlink,
        } => w.route_replace(dst, Some(v4(gateway)?), dev, *onlink),
        RepairAction::LinkUp { dev } => w.link_set(dev, Some(true), None).await,
        RepairAction::LinkMtu { dev, mtu } => w.link_set(dev, None, Some(*mtu)).await,
        RepairAction::AddrReplace { dev, remove, add } => {
            w.addrs_set(dev, remove, std::slice::from_ref(add)).await
        }
        RepairAction::Sysctl { key, value } => w.sysctl(key, value),
        RepairAction::RuleAdd { priority, table } => w.rule_add(*priority, *table).await,
        RepairAction::Ethtool { dev, feature, on } => w.ethtool_feature(dev, feature, *on),
        RepairAction::IptablesChains { .. } => match chains {
            Some(r) => w.iptables_restore(restore_tool(&r.backend), &r.input),
            None => Err(Error::env(
                "the node has no iptables rules to tell its backend (nft or legacy) by",
                None,
            )),
        },
        other => Err(Error::usage(
            format!(
                "{} is not a change --apply makes",
                crate::check::text::action_line(other)
            ),
            None,
        )),
    }
}

/// Undoes one change from what was there before.
async fn restore(w: &Writer, a: &RepairAction, before: &Before) -> Result<()> {
    match (a, before) {
        (RepairAction::NeighReplace { dev, ip: at, .. }, Before::Neigh { lladdr, .. }) => {
            match lladdr {
                Some(mac) => w.neigh_replace(dev, ip(at)?, mac),
                None => w.neigh_del(dev, ip(at)?).await,
            }
        }
        (
            RepairAction::FdbReplace { dev, mac, .. } | RepairAction::FdbDelete { dev, mac, .. },
            Before::Fdb { dsts },
        ) => {
            w.fdb_del(dev, mac).await?;
            for d in dsts {
                w.fdb_replace(dev, mac, *d)?;
            }
            Ok(())
        }
        (RepairAction::RouteReplace { dst, .. }, Before::Route { route }) => match route {
            Some((gw, dev, onlink)) => {
                let gw = match gw {
                    Some(IpAddr::V4(g)) => Some(*g),
                    _ => None,
                };
                w.route_replace(dst, gw, dev, *onlink)
            }
            None => w.route_del(dst).await,
        },
        (RepairAction::LinkUp { dev }, Before::LinkUp { up }) => {
            w.link_set(dev, Some(*up), None).await
        }
        (RepairAction::LinkMtu { dev, .. }, Before::Mtu { mtu }) => {
            w.link_set(dev, None, Some(*mtu)).await
        }
        (RepairAction::Sysctl { key, .. }, Before::Sysctl { value: Some(v) }) => w.sysctl(key, v),
        (RepairAction::AddrReplace { dev, add, .. }, Before::Addrs { addrs }) => {
            w.addrs_set(dev, std::slice::from_ref(add), addrs).await
        }
        (RepairAction::RuleAdd { priority, table }, Before::Rule { present: false }) => {
            w.rule_del(*priority, *table).await
        }
        (RepairAction::IptablesChains { .. }, Before::Chains { backend, restore }) => {
            w.iptables_restore(restore_tool(backend), restore)
        }
        (RepairAction::Ethtool { dev, feature, .. }, Before::Ethtool { on: Some(on) }) => {
            w.ethtool_feature(dev, feature, *on)
        }
        _ => Ok(()),
    }
}
