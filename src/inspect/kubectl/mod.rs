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
use crate::model::shared::Objects;

mod item;
mod split;
mod stream;

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
    let mut all = Decoded::default();
    for path in &files {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len >= stream::FROM_BYTES
            && stream::read_file(path, &mut all).map_err(|e| Error::io(path, e))?
        {
            continue;
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        read_file(path, &text, &mut all)?;
    }
    let Decoded {
        mut cluster,
        endpoints,
        ..
    } = all;
    if cluster.endpoint_slices.is_empty() {
        cluster.endpoint_slices = endpoints.iter().map(convert::endpoints_to_slice).collect();
    }
    if cluster.endpoint_slices.is_empty() {
        cluster.endpoint_slices = convert::slices_from_pods(&cluster).into();
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

/// Objects decoded from one run of items (a file's share for one thread).
#[derive(Default)]
struct Decoded {
    cluster: Cluster,
    endpoints: Vec<k8s_openapi::api::core::v1::Endpoints>,
}

impl Decoded {
    /// Appends `run` (the next in item order). Objects are each behind
    /// their own `Arc` ([`Objects`]): joining moves pointers (1.2 MiB for
    /// 150,000 pods), never the objects.
    fn join(&mut self, run: Decoded) {
        let c = &mut self.cluster;
        let r = run.cluster;
        c.nodes.append(r.nodes);
        c.pods.append(r.pods);
        c.services.append(r.services);
        c.endpoint_slices.append(r.endpoint_slices);
        c.ingresses.append(r.ingresses);
        c.ingress_classes.append(r.ingress_classes);
        c.config_maps.append(r.config_maps);
        c.network_policies.append(r.network_policies);
        self.endpoints.extend(run.endpoints);
    }
}

/// Items per run handed to a decoding thread: small enough that the
/// threads finish together.
const RUN: usize = 1_000;

fn read_file(path: &Path, text: &str, out: &mut Decoded) -> Result<()> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        what: format!("line {}: {e}", e.line()),
    })?;
    let single: Vec<&RawValue>;
    let items: &[&RawValue] = match &doc.items {
        Some(items) => items,
        None => {
            single = vec![
                serde_json::from_str::<&RawValue>(text).map_err(|e| Error::Parse {
                    path: path.to_path_buf(),
                    what: format!("line {}: {e}", e.line()),
                })?,
            ];
            &single
        }
    };
    let list_kind = doc.kind.trim_end_matches("List");
    let runs: Vec<&[&RawValue]> = items.chunks(RUN).collect();
    let decode_run = |k: usize| -> Result<Decoded> {
        let mut d = Decoded::default();
        for (i, raw) in runs[k].iter().enumerate() {
            decode_item(path, text, list_kind, k * RUN + i, raw.get(), &mut d)?;
        }
        Ok(d)
    };
    // The 150,000 pods of a large cluster are 100 MiB of JSON: runs of
    // items are decoded on every core, taken from a shared counter, and
    // joined here in order as they come in, so that each run is freed as
    // soon as it is joined.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(runs.len());
    if threads <= 1 {
        for k in 0..runs.len() {
            out.join(decode_run(k)?);
        }
        return Ok(());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let count = runs.len();
    let (done_tx, done) = std::sync::mpsc::channel::<(usize, Result<Decoded>)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (next, decode_run) = (&next, &decode_run);
            s.spawn(move || {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= count || done_tx.send((k, decode_run(k))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut joined = 0;
        for (k, run) in done {
            waiting.insert(k, run);
            while let Some(run) = waiting.remove(&joined) {
                // The first error in item order is the one reported; the
                // workers stop taking runs.
                match run {
                    Ok(run) => out.join(run),
                    Err(e) => {
                        next.store(count, std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                }
                joined += 1;
            }
        }
        Ok(())
    })
}

/// Decodes item `i` of the file (`body`, a slice of `text`) into `out`.
fn decode_item(
    path: &Path,
    text: &str,
    list_kind: &str,
    i: usize,
    body: &str,
    out: &mut Decoded,
) -> Result<()> {
    // An error's line counts from the start of the file: the newlines
    // before the item are counted only when there is one to report.
    let line_of = |e: &serde_json::Error| {
        let offset = (body.as_ptr() as usize)
            .saturating_sub(text.as_ptr() as usize)
            .min(text.len());
        text.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + e.line()
    };
    let bad = |e: serde_json::Error, kind: &str| Error::Parse {
        path: path.to_path_buf(),
        what: format!("line {}: item {i}{kind}: {e}", line_of(&e)),
    };
    let no_kind = || Error::Parse {
        path: path.to_path_buf(),
        what: format!("item {i} has no kind, and neither has its list"),
    };
    // On an error, the kind is named as well (read again: errors are rare).
    let kind_of = || {
        serde_json::from_str::<Head>(body)
            .ok()
            .map(|h| {
                if h.kind.is_empty() {
                    list_kind.to_string()
                } else {
                    h.kind
                }
            })
            .filter(|k| !k.is_empty())
            .map_or(String::new(), |k| format!(" ({k})"))
    };
    match item::decode(body, list_kind, out).map_err(|e| bad(e, &kind_of()))? {
        item::Outcome::Done => Ok(()),
        item::Outcome::NoKind => Err(no_kind()),
        item::Outcome::Reorder => {
            let head: Head = serde_json::from_str(body).map_err(|e| bad(e, ""))?;
            let kind = if head.kind.is_empty() {
                list_kind
            } else {
                head.kind.as_str()
            };
            if kind.is_empty() {
                return Err(no_kind());
            }
            item::decode_as(body, kind, &head.api_version, out)
                .map_err(|e| bad(e, &format!(" ({kind})")))
        }
    }
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

fn list<T: Serialize>(items: &Objects<T>) -> Value {
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

    /// Reads `files` (name, text) from a scratch directory.
    fn read_texts(files: &[(&str, String)]) -> Result<Cluster> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "knetdoctor-items-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let c = read_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    #[test]
    fn items_decode_whatever_the_order_of_their_keys() {
        // kubectl sorts keys (a ConfigMap's `data` and an EndpointSlice's
        // `addressType` come before `kind`); other writers put `kind` last;
        // a typed list's items may carry no kind; a v1beta1 Ingress is told
        // apart by an apiVersion that comes after its spec.
        let mixed = r#"{"kind": "List", "items": [
          {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n"}},
          {"apiVersion": "v1", "data": {"x": "y"}, "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"}},
          {"metadata": {"name": "b", "namespace": "n"}, "spec": {"nodeName": "w"}, "kind": "Pod", "apiVersion": "v1"},
          {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "endpoints": [], "kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "n", "labels": {"kubernetes.io/service-name": "svc"}}},
          {"kind": "Ingress", "metadata": {"name": "old", "namespace": "n"}, "spec": {"backend": {"serviceName": "svc", "servicePort": 80}}, "apiVersion": "networking.k8s.io/v1beta1"},
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "never"}, "data": {"k": "dg=="}}
        ]}"#;
        let typed = r#"{"kind": "ServiceList", "items": [{"metadata": {"name": "svc", "namespace": "n"}, "spec": {"clusterIP": "10.96.0.9"}}]}"#;
        let c = read_texts(&[("a.json", mixed.into()), ("b.json", typed.into())]).unwrap();
        let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
        assert_eq!(
            names(c.pods.iter().map(|p| p.metadata.name.clone()).collect()),
            ["a", "b"]
        );
        assert_eq!(
            c.pods[1].spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("w")
        );
        assert_eq!(c.config_maps.len(), 1);
        assert_eq!(c.endpoint_slices.len(), 1);
        assert_eq!(c.ingresses.len(), 1, "the v1beta1 Ingress is converted");
        assert_eq!(
            names(c.services.iter().map(|s| s.metadata.name.clone()).collect()),
            ["svc"]
        );
    }

    #[test]
    fn a_large_list_is_decoded_in_order_and_its_errors_say_where() {
        // Enough items for several runs on every core.
        let pod = |i: usize| {
            format!(
                "{{\n  \"apiVersion\": \"v1\", \"kind\": \"Pod\",\n  \"metadata\": {{\"name\": \"p{i}\", \"namespace\": \"n\"}}\n}}"
            )
        };
        let items: Vec<String> = (0..4 * RUN + 7).map(pod).collect();
        let text = format!(
            "{{\"kind\": \"List\", \"items\": [\n{}\n]}}",
            items.join(",\n")
        );
        let c = read_texts(&[("pods.json", text.clone())]).unwrap();
        assert_eq!(c.pods.len(), 4 * RUN + 7);
        assert!(
            c.pods
                .iter()
                .enumerate()
                .all(|(i, p)| p.metadata.name.as_deref() == Some(format!("p{i}").as_str())),
            "items keep their order across runs"
        );
        // Item 2,345's metadata is not an object: its line (3 per item,
        // after the list's first line) and kind are named.
        let bad = text.replacen(
            "\"metadata\": {\"name\": \"p2345\", \"namespace\": \"n\"}",
            "\"metadata\": 7",
            1,
        );
        let e = read_texts(&[("pods.json", bad)]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("line {}: item 2345 (Pod)", 2 + 4 * 2345 + 2)),
            "{e}"
        );
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
