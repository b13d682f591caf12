//! Whose a drop is. The kernel names a dropped packet's namespace only by
//! its inode; this maps inodes to the nodes (and their pods' namespaces)
//! a command is about, and the device index to its name there. On a real
//! node one kernel is one node, so every namespace is that node's; a lab's
//! nodes share this machine's kernel, and only their own namespaces count.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::capture::drops::KernelDrop;

use crate::access::NodeAccess;
use crate::dataplane::Netns;
use crate::error::Result;

/// Where a drop happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub node: String,
    /// The pod namespace it happened in, when not the node's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_netns: Option<String>,
    /// The device it was on, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Place {
    /// `k8s-node-12 cni0`, `k8s-node-12 pod netns kdlab-seed-... eth0`.
    pub fn label(&self) -> String {
        let within = self.within();
        if within.is_empty() {
            self.node.clone()
        } else {
            format!("{} {within}", self.node)
        }
    }

    /// Where on the node: `cni0`, `pod netns kdlab-seed-... eth0`, or
    /// nothing when the packet had no device.
    pub fn within(&self) -> String {
        let pod = self.pod_netns.as_ref().map(|p| format!("pod netns {p}"));
        pod.into_iter()
            .chain(self.device.clone())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A drop and where it happened: what an agent sends back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacedDrop {
    pub place: Place,
    pub drop: KernelDrop,
}

/// Namespaces by inode, with the node each belongs to.
#[derive(Default)]
pub struct Owners {
    by_inode: HashMap<u32, (String, Netns, bool)>,
    /// The node that owns every other namespace: a real node, whose
    /// kernel is its own.
    everything: Option<String>,
    names: Mutex<HashMap<(u32, u32), Option<String>>>,
}

impl Owners {
    /// Adds `node`'s own namespace and its pods'. A node whose namespace
    /// is the machine's first (init's: a real node, not a lab's) owns
    /// every drop on the machine.
    pub fn add(&mut self, node: &str, access: &dyn NodeAccess) -> Result<()> {
        let own = access.netns()?;
        let init = Netns::Path("/proc/1/ns/net".into()).inode().ok();
        if init.is_some() && own.inode().ok() == init {
            self.everything = Some(node.to_string());
        }
        self.insert(node, own, false)?;
        for pod in access.pod_namespaces() {
            // A pod gone since the node was read has nothing to drop.
            let _ = self.insert(node, pod, true);
        }
        Ok(())
    }

    /// Adds one namespace of `node`'s.
    pub fn insert(&mut self, node: &str, netns: Netns, pod: bool) -> Result<()> {
        let inode = netns.inode()? as u32;
        self.by_inode.insert(inode, (node.to_string(), netns, pod));
        Ok(())
    }

    /// Where a drop in namespace `inode` on device `ifindex` happened, or
    /// `None` when that namespace is none of these nodes'.
    pub fn place(&self, inode: u32, ifindex: u32) -> Option<Place> {
        match self.by_inode.get(&inode) {
            Some((node, netns, pod)) => Some(Place {
                node: node.clone(),
                pod_netns: pod.then(|| netns.display_name()),
                device: self.device(inode, netns, ifindex),
            }),
            None => self.everything.as_ref().map(|node| Place {
                node: node.clone(),
                pod_netns: None,
                device: None,
            }),
        }
    }

    /// The name of device `ifindex` in `netns`, asked once.
    fn device(&self, inode: u32, netns: &Netns, ifindex: u32) -> Option<String> {
        if ifindex == 0 {
            return None;
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .entry((inode, ifindex))
            .or_insert_with(|| {
                netns
                    .run(move || nix::net::if_::if_indextoname(ifindex).ok())
                    .ok()
                    .flatten()
                    .map(|n| n.to_string_lossy().to_string())
            })
            .clone()
    }
}
