//! Cluster objects on disk, as kubectl writes them: any directory tree of
//! JSON files holding `kubectl get … -o json` Lists (of one kind or mixed,
//! `kind: List` or `PodList` …) or single objects, including the
//! `kubectl cluster-info dump --output-directory` layout. Items dispatch on
//! their own `kind`; core/v1 Endpoints and v1beta1 Ingresses are converted;
//! Secrets are skipped unread.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::Cluster;
use crate::model::convert;

/// Reads every `*.json` file under `dir` (recursively) into one cluster.
/// Where a cluster has no EndpointSlices, its Endpoints stand in.
pub fn read_dir(dir: &Path) -> Result<Cluster> {
    let mut files = Vec::new();
    collect_json(dir, &mut files)?;
    if files.is_empty() {
        return Err(Error::usage(
            format!("{} holds no JSON files", dir.display()),
            Some("point at `kubectl get nodes,pods,svc,endpointslices,ingress,ingressclass,configmaps -A -o json` output or a `kubectl cluster-info dump --output-directory` directory".to_string()),
        ));
    }
    files.sort();
    let mut cluster = Cluster::default();
    let mut endpoints = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        read_file(path, &text, &mut cluster, &mut endpoints)?;
    }
    if cluster.endpoint_slices.is_empty() {
        cluster.endpoint_slices = endpoints.iter().map(convert::endpoints_to_slice).collect();
    }
    if cluster.endpoint_slices.is_empty() {
        cluster.endpoint_slices = convert::slices_from_pods(&cluster);
    }
    cluster.invalidate_index();
    Ok(cluster)
}

/// A List (or a single object) with its items left as raw JSON text, so
/// each decodes straight into its type without an intermediate tree.
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(default)]
    kind: String,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// The two fields that say what an item is.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: String,
    #[serde(default, rename = "apiVersion")]
    api_version: String,
}

fn read_file(
    path: &Path,
    text: &str,
    cluster: &mut Cluster,
    endpoints: &mut Vec<k8s_openapi::api::core::v1::Endpoints>,
) -> Result<()> {
    let parse_err = |line: usize, what: String| Error::Parse {
        path: path.to_path_buf(),
        what: format!("line {line}: {what}"),
    };
    let doc: Doc = serde_json::from_str(text).map_err(|e| parse_err(e.line(), e.to_string()))?;
    let single: Vec<&RawValue>;
    let items: &[&RawValue] = match &doc.items {
        Some(items) => items,
        None => {
            single = vec![
                serde_json::from_str::<&RawValue>(text)
                    .map_err(|e| parse_err(e.line(), e.to_string()))?,
            ];
            &single
        }
    };
    // Errors inside an item count lines from the start of the file; items
    // come in order, so the newline count advances with them.
    let (mut counted_to, mut line_base) = (0usize, 0usize);
    for (i, raw) in items.iter().enumerate() {
        let body = raw.get();
        let offset = (body.as_ptr() as usize)
            .saturating_sub(text.as_ptr() as usize)
            .min(text.len());
        if offset >= counted_to {
            line_base += text.as_bytes()[counted_to..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            counted_to = offset;
        }
        let head: Head = serde_json::from_str(body)
            .map_err(|e| parse_err(line_base + e.line(), e.to_string()))?;
        let kind = if head.kind.is_empty() {
            doc.kind.trim_end_matches("List").to_string()
        } else {
            head.kind
        };
        if kind.is_empty() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                what: format!("item {i} has no kind, and neither has its list"),
            });
        }
        let bad = |e: serde_json::Error| Error::Parse {
            path: path.to_path_buf(),
            what: format!("line {}: item {i} ({kind}): {e}", line_base + e.line()),
        };
        match kind.as_str() {
            "Node" => cluster.nodes.push(serde_json::from_str(body).map_err(bad)?),
            "Pod" => cluster.pods.push(serde_json::from_str(body).map_err(bad)?),
            "Service" => cluster
                .services
                .push(serde_json::from_str(body).map_err(bad)?),
            "EndpointSlice" => cluster
                .endpoint_slices
                .push(serde_json::from_str(body).map_err(bad)?),
            "Endpoints" => endpoints.push(serde_json::from_str(body).map_err(bad)?),
            "Ingress" if head.api_version.ends_with("v1beta1") => {
                let value: Value = serde_json::from_str(body).map_err(bad)?;
                cluster.ingresses.extend(convert::ingress_v1beta1(&value));
            }
            "Ingress" => cluster
                .ingresses
                .push(serde_json::from_str(body).map_err(bad)?),
            "IngressClass" => cluster
                .ingress_classes
                .push(serde_json::from_str(body).map_err(bad)?),
            "ConfigMap" => cluster
                .config_maps
                .push(serde_json::from_str(body).map_err(bad)?),
            "NetworkPolicy" => cluster
                .network_policies
                .push(serde_json::from_str(body).map_err(bad)?),
            // Secrets are never decoded; other kinds do not matter here.
            _ => {}
        }
    }
    Ok(())
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::usage(format!("{} does not exist", dir.display()), None)
        } else {
            Error::io(dir, e)
        }
    })?;
    for entry in rd.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn list<T: Serialize>(items: &[T]) -> Value {
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items })
}

/// Writes one kubectl-style List per kind into `dir` (created if needed).
pub fn write_dir(cluster: &Cluster, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let files = [
        ("nodes.json", list(&cluster.nodes)),
        ("pods.json", list(&cluster.pods)),
        ("services.json", list(&cluster.services)),
        ("endpointslices.json", list(&cluster.endpoint_slices)),
        ("ingresses.json", list(&cluster.ingresses)),
        ("ingressclasses.json", list(&cluster.ingress_classes)),
        ("configmaps.json", list(&cluster.config_maps)),
        ("networkpolicies.json", list(&cluster.network_policies)),
    ];
    for (file, value) in files {
        let path = dir.join(file);
        let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
        std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kube_proxy::service_ports;
    use std::collections::BTreeSet;

    fn fixture(name: &str) -> Cluster {
        read_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/kubectl")
                .join(name),
        )
        .unwrap()
    }

    fn endpoints(c: &Cluster) -> BTreeSet<(String, String, Vec<String>)> {
        service_ports(c)
            .into_iter()
            .map(|p| (p.name(), p.protocol.clone(), p.endpoints))
            .collect()
    }

    fn seed() -> Cluster {
        let topo = crate::lab::Topology::new(crate::lab::LabParams {
            name: "seed".into(),
            nodes: 3,
            pods_per_node: 1,
        })
        .unwrap();
        crate::lab::objects::cluster(&topo, &|_| true)
    }

    #[test]
    fn kubernetes_1_20_list_reads_as_the_current_api() {
        let c = fixture("v1.20-get");
        let s = seed();
        assert_eq!((c.nodes.len(), c.pods.len(), c.services.len()), (3, 7, 4));
        // Endpoints stand in for EndpointSlices: kube-proxy's view is identical.
        assert_eq!(endpoints(&c), endpoints(&s));
        // The v1beta1 Ingress becomes v1 with its class from the annotation.
        let spec = c.ingresses[0].spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let b = spec.rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths[0]
            .backend
            .service
            .clone()
            .unwrap();
        assert_eq!(
            (b.name.as_str(), b.port.unwrap().number),
            ("linux0224-nginx", Some(80))
        );
        // The Secret in the list is not read.
        assert!(!serde_json::to_string(&c).unwrap().contains("c2VjcmV0"));
        assert!(
            crate::check::run(&c, &[]).is_empty(),
            "{:?}",
            crate::check::run(&c, &[])
        );
    }

    #[test]
    fn cluster_info_dump_layout_derives_endpoints_from_pods() {
        let c = fixture("cluster-info-dump");
        assert_eq!((c.nodes.len(), c.pods.len(), c.services.len()), (3, 7, 4));
        // default/kubernetes has no selector, so no endpoints can be derived for it.
        let want: BTreeSet<_> = endpoints(&seed())
            .into_iter()
            .filter(|(n, _, _)| !n.starts_with("default/kubernetes"))
            .collect();
        let got: BTreeSet<_> = endpoints(&c)
            .into_iter()
            .filter(|(n, _, _)| !n.starts_with("default/kubernetes"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_or_missing_directories_are_clear_errors() {
        let e = read_dir(Path::new("/nonexistent-knetdoctor"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let dir = std::env::temp_dir().join(format!("knetdoctor-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_dir(&dir).unwrap_err().to_string();
        let _ = std::fs::remove_dir(&dir);
        assert!(e.contains("no JSON files"), "{e}");
    }
}
