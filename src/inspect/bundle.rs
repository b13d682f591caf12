//! The offline bundle `collect` writes and every command can read with
//! `--bundle DIR`:
//!
//! ```text
//! DIR/cluster/*.json                         kubectl-style Lists (no Secrets)
//! DIR/nodes/<node>/state.json                NodeState
//! DIR/nodes/<node>/iptables-<backend>.save   the raw iptables-save text
//! ```

use std::path::{Path, PathBuf};

use crate::dataplane::NodeState;
use crate::dataplane::state::{IptablesBackendState, Unread, UnreadSource};
use crate::error::{Error, Result};
use crate::model::Cluster;

/// True if `path` names a gzipped tarball rather than a directory.
pub fn is_tarball(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Packs a bundle directory into `file` (gzipped tar, paths relative to
/// the bundle). Written beside `file` and put in place only when whole;
/// anything already at `file`, a dangling symlink included, is refused.
pub fn pack(dir: &Path, file: &Path) -> Result<()> {
    let out = crate::files::Output::create(file, crate::files::Replace::No)?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::default(),
    ));
    tar.append_dir_all("bundle", dir)
        .map_err(|e| Error::io(file, e))?;
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| Error::io(file, e))?
        .commit()
}

/// Unpacks a bundle tarball into a fresh temporary directory (removed when
/// the returned handle is dropped, and at once when unpacking fails) and
/// returns the handle with the bundle inside it. Entries may not escape
/// that directory.
pub fn unpack(file: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let dest = tempfile::Builder::new()
        .prefix("knetdoctor-bundle-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    archive.unpack(dest.path()).map_err(|e| Error::Parse {
        path: file.to_path_buf(),
        what: format!("not a bundle tarball: {e}"),
    })?;
    let inner = dest.path().join("bundle");
    let dir = if inner.is_dir() {
        inner
    } else {
        dest.path().to_path_buf()
    };
    Ok((dest, dir))
}

/// True if `dir` is a knetdoctor bundle rather than a plain kubectl directory.
pub fn is_bundle(dir: &Path) -> bool {
    dir.join("cluster").is_dir()
}

/// The bundle's cluster objects; a plain kubectl directory (kubectl get
/// Lists, a cluster-info dump) is read as a bundle without node states.
/// A directory with none of the objects knetdoctor reads is an error, not
/// an empty (and so "healthy") cluster.
pub fn read_cluster(dir: &Path) -> Result<Cluster> {
    let cluster = if is_bundle(dir) {
        super::kubectl::read_dir(&dir.join("cluster"))
    } else {
        super::kubectl::read_dir(dir)
    }?;
    if cluster.is_empty() {
        return Err(Error::usage(
            format!(
                "nothing to check: {} holds none of the objects knetdoctor reads (Nodes, Pods, Services, EndpointSlices or Endpoints, Ingresses, ConfigMaps)",
                dir.display()
            ),
            Some(
                "point --bundle at a `knetdoctor collect` bundle, or a directory of `kubectl get -o json` output or a `kubectl cluster-info dump`"
                    .to_string(),
            ),
        ));
    }
    Ok(cluster)
}

fn nodes_dir(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// Nodes whose state the bundle holds.
pub fn node_names(dir: &Path) -> Result<Vec<String>> {
    if !is_bundle(dir) && dir.is_dir() {
        return Ok(Vec::new());
    }
    let nd = nodes_dir(dir);

    let rd = std::fs::read_dir(&nd).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::usage(
                format!(
                    "{} is not a knetdoctor bundle (no nodes/ directory)",
                    dir.display()
                ),
                Some("create one with `knetdoctor collect -o DIR`".to_string()),
            )
        } else {
            Error::io(&nd, e)
        }
    })?;
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    Ok(v)
}

/// One node's state from the bundle. Its rules are the raw
/// `iptables-<backend>.save` dumps beside `state.json`, parsed here (so a
/// person can put a real dump in their place); one that does not parse is
/// recorded as unread, with the line that failed.
pub fn read_node(dir: &Path, node: &str) -> Result<NodeState> {
    let nd = nodes_dir(dir).join(node);
    let path = nd.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut state: NodeState = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path,
        what: format!("line {}: {e}", e.line()),
    })?;
    let mut dumps: Vec<(String, PathBuf)> = std::fs::read_dir(&nd)
        .map_err(|e| Error::io(&nd, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let backend = name.strip_prefix("iptables-")?.strip_suffix(".save")?;
            Some((backend.to_string(), e.path()))
        })
        .collect();
    dumps.sort();
    for (backend, p) in dumps {
        state.iptables.retain(|b| b.backend != backend);
        let read = std::fs::read_to_string(&p).map_err(|e| e.to_string());
        match read.and_then(|t| {
            crate::dataplane::iptables::save::parse(&t)
                .map(|rs| (rs, t))
                .map_err(|e| e.to_string())
        }) {
            Ok((ruleset, raw)) => state.iptables.push(IptablesBackendState {
                backend,
                ruleset,
                raw: Some(raw),
            }),
            Err(e) => state.unread.push(Unread {
                source: UnreadSource::Iptables { backend },
                cause: format!("{}: {e}", p.display()),
            }),
        }
    }
    Ok(state)
}

/// Writes a bundle: the cluster as [`super::redact::for_bundle`] leaves it
/// (Secrets are never part of [`Cluster`]) and each node's state plus its
/// raw iptables-save text. Returns what was left out or redacted.
pub fn write(
    dir: &Path,
    cluster: &Cluster,
    nodes: &[(String, NodeState)],
) -> Result<super::redact::Redactions> {
    let (cluster, redactions) = super::redact::for_bundle(cluster);
    super::kubectl::write_dir(&cluster, &dir.join("cluster"))?;
    for (name, state) in nodes {
        let nd = nodes_dir(dir).join(name);
        std::fs::create_dir_all(&nd).map_err(|e| Error::io(&nd, e))?;
        let path = nd.join("state.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(state).expect("NodeState serializes"),
        )
        .map_err(|e| Error::io(&path, e))?;
        for b in &state.iptables {
            let p = nd.join(format!("iptables-{}.save", b.backend));
            // Verbatim as the tool printed it; rendered only for a state
            // that was never read from a tool (a synthetic one).
            let text = b.raw.clone().unwrap_or_else(|| b.ruleset.render());
            std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(redactions)
}
