//! `knetdoctor collect -o DIR|FILE.tar.gz`: an offline bundle.

use knetdoctor::error::Result;
use knetdoctor::inspect;

use super::out;
use crate::cli::CollectArgs;

pub fn run(a: CollectArgs) -> Result<u8> {
    // A dangling symlink counts: it names a place already taken.
    if std::fs::symlink_metadata(&a.dir).is_ok() {
        return Err(knetdoctor::Error::usage(
            format!("{} already exists", a.dir.display()),
            Some("name a new directory; collect never overwrites".to_string()),
        ));
    }
    let target = knetdoctor::access::Source {
        lab: a.lab.clone(),
        ..Default::default()
    }
    .target()?;
    let reading = super::progress::Spinner::start("reading the cluster and its nodes");
    let cluster = target.cluster()?;
    let nodes = target.node_states(None)?;
    drop(reading);
    let redactions = if inspect::bundle::is_tarball(&a.dir) {
        let tmp = tempfile::Builder::new()
            .prefix("knetdoctor-collect-")
            .tempdir()
            .map_err(|e| knetdoctor::Error::io(std::env::temp_dir(), e))?;
        let dir = tmp.path().join("bundle");
        let r = inspect::bundle::write(&dir, &cluster, &nodes)?;
        inspect::bundle::pack(&dir, &a.dir)?;
        r
    } else {
        inspect::bundle::write(&a.dir, &cluster, &nodes)?
    };
    out(&format!(
        "bundle written to {}: {} nodes, {} pods, {} services\n{}",
        a.dir.display(),
        nodes.len(),
        cluster.pods.len(),
        cluster.services.len(),
        redactions.text()
    ));
    Ok(0)
}
