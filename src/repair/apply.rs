//! Carrying out a repair plan on a node, inside the node's network
//! namespace: each action through the dataplane writer (rtnetlink, or
//! `iptables-restore --noflush` for chains), with the journal written
//! before the first change and progress recorded after each one. `undo`
//! puts back exactly what the journal recorded, newest change first.

use std::net::IpAddr;

use std::path::Path;

use super::iptables::{ChainsRestore, restore_tool};
use super::nftables::TableRestore;
use std::sync::Arc;

use super::journal::{Entry, Journal, Restore, Status, locked};
use super::pipeline;
use super::plan::{Before, Step, before};
use crate::check::RepairAction;
use crate::dataplane::write::Writer;
use crate::dataplane::{Netns, NodeState, RouteDst};
use crate::error::{Error, Result};

/// Whether `--apply` can carry this step out; a plan with others is
/// refused whole, before anything changes.
pub fn supported(s: &Step) -> bool {
    match &s.action {
        RepairAction::IptablesChains { .. } => s.iptables.is_some(),
        RepairAction::NftablesTable { .. } => s.nftables.is_some(),
        RepairAction::IptablesPolicy { .. } | RepairAction::Manual { .. } => false,
        _ => true,
    }
}

/// Whether `a` is a neigh, FDB or route entry on `dev`.
fn on_device(a: &RepairAction, dev: &str) -> bool {
    match a {
        RepairAction::NeighReplace { dev: d, .. }
        | RepairAction::FdbReplace { dev: d, .. }
        | RepairAction::FdbDelete { dev: d, .. }
        | RepairAction::RouteReplace { dev: d, .. } => d == dev,
        _ => false,
    }
}

/// "Nothing was there" for an entry action.
fn absent(a: &RepairAction) -> Before {
    match a {
        RepairAction::NeighReplace { .. } => Before::Neigh {
            lladdr: None,
            permanent: false,
        },
        RepairAction::FdbReplace { .. } | RepairAction::FdbDelete { .. } => {
            Before::Fdb { dsts: Vec::new() }
        }
        _ => Before::Route { route: None },
    }
}

/// What the journal records for step `s` before it is made.
fn journaled(s: &Step, state: &NodeState) -> Before {
    match (&s.action, &s.iptables) {
        (RepairAction::IptablesChains { .. }, Some(r)) => Before::Chains {
            backend: r.backend.clone(),
            restore: r.undo.clone(),
        },
        _ => match (&s.action, &s.nftables) {
            (RepairAction::NftablesTable { .. }, Some(r)) => Before::NftTable {
                restore: r.undo.clone(),
            },
            _ => before(&s.action, state),
        },
    }
}

/// Applies `steps` in order inside `netns`, the journal in `dir` on disk
/// before the first change and each change's entries on disk before it is
/// sent; stops at the first failure. Returns the journal either way.
pub fn apply(
    netns: &Netns,
    node: &str,
    steps: &[Step],
    state: &NodeState,
    dir: &Path,
) -> Result<Journal> {
    // A device made anew takes its neigh, FDB and route entries with it:
    // those planned after it replace nothing.
    let recreated: Option<(usize, &str)> =
        steps.iter().enumerate().find_map(|(k, s)| match &s.action {
            RepairAction::VtepRecreate { spec } => Some((k, spec.dev.as_str())),
            _ => None,
        });
    let entries = steps
        .iter()
        .enumerate()
        .map(|(k, s)| Entry {
            action: s.action.clone(),
            finding: s.finding,
            before: match recreated {
                Some((at, dev)) if k > at && on_device(&s.action, dev) => absent(&s.action),
                _ => journaled(s, state),
            },
            applied: false,
            error: None,
            unanswered: false,
            restore: Restore::Untouched,
        })
        .collect();
    let t = std::time::Instant::now();
    let mut j = Journal::new(node, entries);
    let log = j.begin(dir)?;
    tracing::debug!("journal {} written in {:?}", j.id, t.elapsed());
    #[cfg(debug_assertions)]
    test_hook::pause("journaled");
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
        // What became of entry k, in the journal in memory and (unless the
        // sender already logged it) in the progress log.
        let mut note = |(k, outcome): pipeline::Outcome, logged: bool| -> Result<()> {
            let e = &mut j.entries[k];
            if !logged {
                let mut log = locked(&log);
                match &outcome {
                    None => log.unsent(k)?,
                    Some(r) => log.record(k, r.as_ref().err().map(String::as_str))?,
                }
            }
            match outcome {
                None => {}
                Some(Ok(())) => e.applied = true,
                Some(Err(msg)) => {
                    e.error = Some(msg);
                    failed = true;
                }
            }
            Ok(())
        };
        if overlay {
            let run = (i..end).map(|k| (k, actions[k].clone())).collect();
            let journal = log.clone();
            let before_send: pipeline::BeforeSend =
                Arc::new(move |ks: &[usize]| locked(&journal).sending(ks));
            pipeline::run(netns, run, before_send, |o| note(o, false))?;
        } else {
            let run: Vec<(usize, RepairAction, Inputs)> = (i..end)
                .map(|k| {
                    let inputs = Inputs {
                        chains: steps[k].iptables.clone(),
                        table: steps[k].nftables.clone(),
                    };
                    (k, actions[k].clone(), inputs)
                })
                .collect();
            let journal = log.clone();
            let outcomes = Writer::run(netns, move |w| async move {
                let mut out = Vec::with_capacity(run.len());
                for (k, action, inputs) in &run {
                    // On disk before the kernel sees it; its outcome on
                    // disk before the next one is sent.
                    let journaled = locked(&journal).sending(&[*k]);
                    let r = match journaled {
                        Ok(()) => make(&w, action, inputs).await,
                        Err(e) => Err(e),
                    };
                    #[cfg(debug_assertions)]
                    test_hook::pause(&format!("made-{k}"));
                    let r = r.map_err(|e| e.to_string());
                    {
                        let mut log = locked(&journal);
                        log.record(*k, r.as_ref().err().map(String::as_str))?;
                        log.flush()?;
                    }
                    let stop = r.is_err();
                    out.push((*k, Some(r)));
                    if stop {
                        break;
                    }
                }
                Ok(out)
            })?;
            for o in outcomes {
                note(o, true)?;
            }
        }
        locked(&log).flush()?;
        i = end;
    }
    locked(&log).done()?;
    j.finished = true;
    j.status = if failed {
        Status::Failed
    } else {
        Status::Finished
    };
    tracing::debug!("changes made after {:?}", t.elapsed());
    Ok(j)
}

/// Puts back what journal `id` recorded, newest change first: every change
/// the repair made (or sent) that no earlier undo put back. The undo is
/// journaled like the repair — each change on disk before it is sent, its
/// outcome after — and stops at the first the kernel refuses; run again,
/// it puts back the rest.
pub fn undo(netns: &Netns, dir: &Path, id: &str) -> Result<Journal> {
    let mut j = Journal::load(dir, id)?;
    if j.undone {
        return Err(Error::usage(
            format!("repair {id} was already undone"),
            Some("`repair --history` lists the repairs".into()),
        ));
    }
    if j.status == Status::Running {
        return Err(Error::env(
            format!("repair {id} is still running"),
            Some("wait for it to finish, then undo it".into()),
        ));
    }
    let todo: Vec<(usize, RepairAction, Before)> = j
        .entries
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, e)| e.applied && e.restore != Restore::Restored)
        .map(|(k, e)| (k, e.action.clone(), e.before.clone()))
        .collect();
    let log = j.undo_progress(dir)?;
    let journal = log.clone();
    let outcomes = Writer::run(netns, move |w| async move {
        let mut out = Vec::with_capacity(todo.len());
        for (k, action, before) in &todo {
            let journaled = locked(&journal).sending(&[*k]);
            let r = match journaled {
                Ok(()) => restore(&w, action, before).await,
                Err(e) => Err(e),
            };
            let stop = r.is_err();
            out.push((*k, r.map_err(|e| e.to_string())));
            if stop {
                break;
            }
        }
        Ok(out)
    })?;
    {
        let mut log = locked(&log);
        for (k, r) in &outcomes {
            log.record(*k, r.as_ref().err().map(String::as_str))?;
            j.entries[*k].restore = match r {
                Ok(()) => Restore::Restored,
                Err(m) => Restore::Failed(m.clone()),
            };
        }
        log.done()?;
    }
    let failed = outcomes.iter().any(|(_, r)| r.is_err());
    j.undone = !failed;
    j.status = if failed {
        Status::PartlyUndone
    } else {
        Status::Undone
    };
    j.save(dir)?;
    Ok(j)
}

/// Test builds only: `KNETDOCTOR_TEST_PAUSE=POINT:FILE` stops a repair at
/// POINT until FILE is removed (at most 60 s), so a test can act at exactly
/// that moment — a second repair, a change to the node, a kill.
#[cfg(debug_assertions)]
pub mod test_hook {
    /// Waits at `point` when the environment asks for it.
    pub fn pause(point: &str) {
        let Ok(spec) = std::env::var("KNETDOCTOR_TEST_PAUSE") else {
            return;
        };
        let Some((at, file)) = spec.split_once(':') else {
            return;
        };
        if at != point {
            return;
        }
        let file = std::path::Path::new(file);
        let _ = std::fs::write(file, std::process::id().to_string());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// An IPv4 gateway (flannel's are the peers' VTEP addresses).
fn v4(ip: &IpAddr) -> Result<std::net::Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Ok(*v),
        IpAddr::V6(v) => Err(Error::usage(format!("{v} is not an IPv4 gateway"), None)),
    }
}

/// The IPv4 prefix a route change is about.
fn prefix(dst: &RouteDst) -> Result<ipnet::Ipv4Net> {
    dst.v4()
        .ok_or_else(|| Error::usage(format!("{dst} is not an IPv4 route"), None))
}

/// The inputs a netfilter action is carried out with (planned, pure).
#[derive(Debug, Clone, Default)]
pub(super) struct Inputs {
    chains: Option<ChainsRestore>,
    table: Option<TableRestore>,
}

/// Makes one change.
pub(super) async fn make(w: &Writer, a: &RepairAction, inputs: &Inputs) -> Result<()> {
    match a {
        RepairAction::NeighReplace { dev, ip, mac } => w.neigh_replace(dev, *ip, *mac),
        RepairAction::FdbReplace { dev, mac, dst } => w.fdb_replace(dev, *mac, *dst),
        RepairAction::FdbDelete { dev, mac, .. } => w.fdb_del(dev, *mac).await,
        RepairAction::RouteReplace {
            dst,
            gateway,
            dev,
            onlink,
        } => w.route_replace(*dst, Some(v4(gateway)?), dev, *onlink),
        RepairAction::RouteDelete { dst, table } => w.route_del_in(prefix(dst)?, *table).await,
        RepairAction::VtepRecreate { spec } => w.vxlan_recreate(spec).await,
        RepairAction::LinkUp { dev } => w.link_set(dev, Some(true), None).await,
        RepairAction::LinkMtu { dev, mtu } => w.link_set(dev, None, Some(*mtu)).await,
        RepairAction::AddrReplace { dev, remove, add } => {
            w.addrs_set(dev, remove, std::slice::from_ref(add)).await
        }
        RepairAction::Sysctl { key, value } => w.sysctl(key, value),
        RepairAction::RuleAdd { priority, table } => w.rule_add(*priority, *table).await,
        RepairAction::Ethtool { dev, feature, on } => w.ethtool_feature(dev, feature, *on),
        RepairAction::NftablesTable { .. } => match &inputs.table {
            Some(r) => w.nft_apply(&r.input),
            None => Err(Error::env("no table was planned for this action", None)),
        },
        RepairAction::IptablesChains { .. } => match &inputs.chains {
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
        (RepairAction::NeighReplace { dev, ip, .. }, Before::Neigh { lladdr, .. }) => {
            match lladdr {
                Some(mac) => w.neigh_replace(dev, *ip, *mac),
                None => w.neigh_del(dev, *ip).await,
            }
        }
        (
            RepairAction::FdbReplace { dev, mac, .. } | RepairAction::FdbDelete { dev, mac, .. },
            Before::Fdb { dsts },
        ) => {
            w.fdb_del(dev, *mac).await?;
            for d in dsts {
                w.fdb_replace(dev, *mac, *d)?;
            }
            Ok(())
        }
        (
            RepairAction::RouteDelete { dst, table },
            Before::Route {
                route: Some((gw, dev, onlink)),
            },
        ) if *table != 254 => {
            w.route_add_in(prefix(dst)?, *gw, dev, *onlink, *table)
                .await
        }
        (
            RepairAction::RouteReplace { .. } | RepairAction::RouteDelete { .. },
            Before::Route { route },
        ) => {
            let dst = match a {
                RepairAction::RouteReplace { dst, .. } => *dst,
                RepairAction::RouteDelete { dst, .. } => prefix(dst)?,
                _ => unreachable!("matched above"),
            };
            match route {
                Some((gw, dev, onlink)) => {
                    let gw = match gw {
                        Some(IpAddr::V4(g)) => Some(*g),
                        _ => None,
                    };
                    w.route_replace(dst, gw, dev, *onlink)
                }
                None => w.route_del(dst).await,
            }
        }
        (
            RepairAction::VtepRecreate { spec: new },
            Before::Vtep {
                spec,
                neighs,
                fdb,
                routes,
                tx_checksum,
            },
        ) => {
            match spec {
                Some(old) => w.vxlan_recreate(old).await?,
                None => {
                    return Err(Error::env(
                        format!(
                            "{} was not there before the repair; delete it by hand if it should not be",
                            new.dev
                        ),
                        None,
                    ));
                }
            }
            for (at, mac) in neighs {
                w.neigh_replace(&new.dev, *at, *mac)?;
            }
            for (mac, dst) in fdb {
                w.fdb_replace(&new.dev, *mac, *dst)?;
            }
            for (dst, gw, onlink) in routes {
                let gw = match gw {
                    Some(IpAddr::V4(g)) => Some(*g),
                    _ => None,
                };
                w.route_replace(prefix(dst)?, gw, &new.dev, *onlink)?;
            }
            if let Some(on) = tx_checksum {
                w.ethtool_feature(&new.dev, "tx-checksum-ip-generic", *on)?;
            }
            Ok(())
        }
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
        (RepairAction::NftablesTable { .. }, Before::NftTable { restore }) => w.nft_apply(restore),
        (RepairAction::Ethtool { dev, feature, .. }, Before::Ethtool { on: Some(on) }) => {
            w.ethtool_feature(dev, feature, *on)
        }
        _ => Ok(()),
    }
}
