//! The lab's state file: what it built, which processes it started and which
//! faults are injected. Written before anything is created, so `lab down`
//! can clean up after a crash at any point.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::faults::ActiveFault;
use super::topology::Topology;
use crate::error::{Error, Result};

/// Which iptables the lab's nodes use (both exist on Debian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IptablesBackend {
    /// iptables-nft: the nf_tables kernel API (Debian's default).
    Nft,
    /// iptables-legacy: the x_tables kernel API.
    Legacy,
}

impl IptablesBackend {
    /// Both, Debian's default first.
    pub const ALL: [IptablesBackend; 2] = [IptablesBackend::Nft, IptablesBackend::Legacy];

    /// The name `--iptables` takes.
    pub fn name(self) -> &'static str {
        match self {
            IptablesBackend::Nft => "nft",
            IptablesBackend::Legacy => "legacy",
        }
    }

    /// The restore tool for this backend.
    pub fn restore(self) -> &'static str {
        match self {
            IptablesBackend::Nft => "iptables-nft-restore",
            IptablesBackend::Legacy => "iptables-legacy-restore",
        }
    }
    /// The save tool for this backend.
    pub fn save(self) -> &'static str {
        match self {
            IptablesBackend::Nft => "iptables-nft-save",
            IptablesBackend::Legacy => "iptables-legacy-save",
        }
    }
}

/// A process the lab started, identified by PID and kernel start time so a
/// recycled PID is never signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedProcess {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start_time: u64,
    /// `dnsmasq`, `nginx`, `responder`.
    pub role: String,
    pub pod: String,
    pub netns: String,
}

/// Everything `lab down`, `lab break` and `lab heal` need to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub topology: Topology,
    pub iptables: IptablesBackend,
    /// The lab's directory (state, cluster objects, configs, logs).
    pub dir: PathBuf,
    pub processes: Vec<TrackedProcess>,
    pub faults: Vec<ActiveFault>,
    /// False until `lab up` finished.
    pub complete: bool,
    /// The API server the lab's objects are published to (`lab up --kubeconfig`,
    /// or the lab's own with `--control-plane`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The lab's own control plane and kube-proxy (`lab up --control-plane`).
    #[serde(default)]
    pub control_plane: Option<super::control_plane::ControlPlane>,
    /// How kube-proxy programs the nodes: the lab renders that mode's rules,
    /// or with a control plane the real kube-proxy runs in it.
    #[serde(default)]
    pub kube_proxy: super::control_plane::KubeProxyMode,
    /// flannel runs in nftables mode (`EnableNFTables`): its rules are
    /// `table ip flannel-ipv4`, not FLANNEL-* chains.
    #[serde(default)]
    pub flannel_nftables: bool,
}

/// Where labs keep their directories: `$KNETDOCTOR_RUN_DIR/lab`, by default
/// `/run/knetdoctor/lab` (tmpfs: it goes away on reboot with the namespaces).
pub fn labs_root() -> PathBuf {
    std::env::var_os("KNETDOCTOR_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/knetdoctor"))
        .join("lab")
}

/// The directory of lab `name`.
pub fn lab_dir(name: &str) -> PathBuf {
    labs_root().join(name)
}

impl LabState {
    /// The state file's path.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// The cluster objects directory.
    pub fn cluster_dir(&self) -> PathBuf {
        self.dir.join("cluster")
    }

    /// Loads the state of lab `name`, or `None` when it has none.
    pub fn load(name: &str) -> Result<Option<Self>> {
        let path = Self::path(&lab_dir(name));
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Parse {
                    path,
                    what: format!(
                        "{e}; `knetdoctor lab down --name {name}` removes the lab anyway"
                    ),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Loads lab `name`, failing with a hint when it is not up.
    pub fn require(name: &str) -> Result<Self> {
        Self::load(name)?.ok_or_else(|| {
            Error::env(
                format!("lab {name:?} is not up"),
                Some(format!("start it with `knetdoctor lab up --name {name}`")),
            )
        })
    }

    /// Writes the state atomically, 0600 in a 0700 directory: `lab down`
    /// (as root) kills the processes it lists.
    pub fn save(&self) -> Result<()> {
        crate::files::private_dir(&self.dir)?;
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        crate::files::write_private(&Self::path(&self.dir), text.as_bytes())
    }
}
