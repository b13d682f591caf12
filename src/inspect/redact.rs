//! What a bundle leaves out. A bundle is made to be handed to someone else,
//! so it carries only what knetdoctor judges: the ConfigMaps it reads (not
//! every ConfigMap), pods' environment variables by name with literal values
//! replaced, and no `last-applied-configuration` annotations (a full copy of
//! an object as it was applied, Secret-like values included). Secrets are
//! never read at all. What was taken out is counted and named, so the person
//! who collects can say what the bundle holds.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::model::Cluster;
use crate::model::cluster::reads_config_map;

/// What stands in for a redacted value.
pub const REDACTED: &str = "<redacted by knetdoctor collect>";

/// Annotations that copy a whole object and may carry credentials.
const COPY_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// What a bundle left out.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Redactions {
    /// ConfigMaps knetdoctor does not read, `namespace/name`.
    pub config_maps_left_out: Vec<String>,
    /// Environment variables whose literal value was replaced,
    /// `namespace/pod/container: NAME`.
    pub env_values: Vec<String>,
    /// Annotations removed, `kind namespace/name: annotation`.
    pub annotations: Vec<String>,
}

impl Redactions {
    /// One paragraph for the person who ran `collect`.
    pub fn text(&self) -> String {
        let sample = |v: &[String]| {
            let mut s: Vec<&str> = v.iter().take(3).map(String::as_str).collect();
            if v.len() > 3 {
                s.push("…");
            }
            s.join(", ")
        };
        let mut o = String::new();
        if !self.config_maps_left_out.is_empty() {
            o.push_str(&format!(
                "left out {} ConfigMap(s) knetdoctor does not read ({})\n",
                self.config_maps_left_out.len(),
                sample(&self.config_maps_left_out)
            ));
        }
        if !self.env_values.is_empty() {
            o.push_str(&format!(
                "redacted {} environment value(s) ({})\n",
                self.env_values.len(),
                sample(&self.env_values)
            ));
        }
        if !self.annotations.is_empty() {
            o.push_str(&format!(
                "removed {} last-applied-configuration annotation(s) ({})\n",
                self.annotations.len(),
                sample(&self.annotations)
            ));
        }
        o
    }
}

/// The cluster as a bundle may carry it, and what was taken out.
pub fn for_bundle(cluster: &Cluster) -> (Cluster, Redactions) {
    let mut r = Redactions::default();
    let mut c = cluster.clone();
    c.config_maps.retain(|cm| {
        let keep = reads_config_map(cm);
        if !keep {
            r.config_maps_left_out.push(name(&cm.metadata));
        }
        keep
    });
    for p in c.pods.iter_mut() {
        let pod = name(&p.metadata);
        if let Some(spec) = p.spec.as_mut() {
            redact_env(&pod, spec, &mut r.env_values);
        }
    }
    let metas = c
        .nodes
        .iter_mut()
        .map(|o| ("Node", &mut o.metadata))
        .chain(c.pods.iter_mut().map(|o| ("Pod", &mut o.metadata)))
        .chain(c.services.iter_mut().map(|o| ("Service", &mut o.metadata)))
        .chain(
            c.endpoint_slices
                .iter_mut()
                .map(|o| ("EndpointSlice", &mut o.metadata)),
        )
        .chain(c.ingresses.iter_mut().map(|o| ("Ingress", &mut o.metadata)))
        .chain(
            c.ingress_classes
                .iter_mut()
                .map(|o| ("IngressClass", &mut o.metadata)),
        )
        .chain(
            c.config_maps
                .iter_mut()
                .map(|o| ("ConfigMap", &mut o.metadata)),
        )
        .chain(
            c.network_policies
                .iter_mut()
                .map(|o| ("NetworkPolicy", &mut o.metadata)),
        );
    for (kind, meta) in metas {
        let who = name(meta);
        if let Some(a) = meta.annotations.as_mut() {
            for key in COPY_ANNOTATIONS {
                if a.remove(key).is_some() {
                    r.annotations.push(format!("{kind} {who}: {key}"));
                }
            }
        }
    }
    c.invalidate_index();
    (c, r)
}

fn name(m: &ObjectMeta) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

fn redact_env(pod: &str, spec: &mut PodSpec, out: &mut Vec<String>) {
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
        .map(|c| (&c.name, &mut c.env));
    let ephemeral = spec
        .ephemeral_containers
        .iter_mut()
        .flatten()
        .map(|c| (&c.name, &mut c.env));
    for (container, env) in containers.chain(ephemeral) {
        for e in env.iter_mut().flatten() {
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                e.value = Some(REDACTED.to_string());
                out.push(format!("{pod}/{container}: {}", e.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_keeps_what_knetdoctor_reads_and_redacts_the_rest() {
        let (mut c, _) = crate::check::fixtures::seed();
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.namespace = Some("default".into());
        cm.metadata.name = Some("app-settings".into());
        cm.data = Some([("DB_PASSWORD".to_string(), "hunter2".to_string())].into());
        c.config_maps.push(cm);
        let pod = &mut c.pods[0];
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "API_TOKEN".into(),
            value: Some("s3cr3t".into()),
            value_from: None,
        }]);
        pod.metadata.annotations.get_or_insert_default().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            r#"{"env":[{"name":"API_TOKEN","value":"s3cr3t"}]}"#.into(),
        );
        let kept_maps = c.config_maps.len() - 1;
        let (out, r) = for_bundle(&c);
        let text = serde_json::to_string(&out).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
        assert_eq!(out.config_maps.len(), kept_maps);
        assert_eq!(r.config_maps_left_out, ["default/app-settings"]);
        assert_eq!(r.env_values.len(), 1);
        assert!(r.env_values[0].ends_with(": API_TOKEN"), "{r:?}");
        assert_eq!(r.annotations.len(), 1);
        // What flannel and kube-proxy are judged by stays.
        assert_eq!(out.nodes, c.nodes);
        assert!(
            r.text().contains("redacted 1 environment value(s)"),
            "{}",
            r.text()
        );
    }
}
