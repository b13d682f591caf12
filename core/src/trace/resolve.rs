//! What SRC and DST name: a pod (`ns/name`, `name` with -n, or its IP), a
//! Service (`ns/name[:port]` or its ClusterIP), a DNS name (resolved later,
//! the way the source pod would), a URL from outside (`http://host/path`),
//! a node with a NodePort (`k8s-node-11:30005`), or an outside address.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Cluster;
use crate::model::flannel::Lease;

/// A resolved end of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum End {
    Pod {
        namespace: String,
        name: String,
        ip: IpAddr,
        node: String,
    },
    Service {
        namespace: String,
        name: String,
        ip: IpAddr,
        port: Option<u16>,
    },
    Dns {
        name: String,
    },
    Url {
        host: String,
        path: String,
    },
    NodePort {
        node: String,
        ip: IpAddr,
        port: u16,
    },
    Node {
        node: String,
        ip: IpAddr,
    },
    Outside {
        ip: IpAddr,
    },
}

impl End {
    /// How the end is shown.
    pub fn label(&self) -> String {
        match self {
            End::Pod {
                namespace,
                name,
                ip,
                ..
            } => format!("pod {namespace}/{name} ({ip})"),
            End::Service {
                namespace,
                name,
                ip,
                port,
            } => format!(
                "service {namespace}/{name} ({ip}{})",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            End::Dns { name } => format!("dns {name}"),
            End::Url { host, path } => format!("http://{host}{path}"),
            End::NodePort { node, ip, port } => format!("node {node} ({ip}) port {port}"),
            End::Node { node, ip } => format!("node {node} ({ip})"),
            End::Outside { ip } => format!("outside {ip}"),
        }
    }
}

fn pod_end(p: &Pod) -> Option<End> {
    Some(End::Pod {
        namespace: p.metadata.namespace.clone()?,
        name: p.metadata.name.clone()?,
        ip: p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?,
        node: p.spec.as_ref()?.node_name.clone()?,
    })
}

/// The node whose InternalIP or flannel public-ip is `ip`.
pub fn node_by_ip(cluster: &Cluster, ip: IpAddr) -> Option<String> {
    cluster.index().nodes.node_by_address.get(&ip).cloned()
}

fn node_ip(cluster: &Cluster, node: &str) -> Option<IpAddr> {
    let n = cluster.node(node)?;
    Lease::from_node(n)
        .ok()
        .map(|l| IpAddr::V4(l.public_ip))
        .or_else(|| {
            n.status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .and_then(|a| a.address.parse().ok())
        })
}

/// What a URL path may carry as it is in a request line: anything else
/// (controls, CR and LF above all, spaces, quotes) is percent-encoded, so a
/// path can never end the request line and smuggle headers or a second
/// request onto the wire.
const PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A URL's host (a DNS name, optionally with a port) and its path, the
/// path percent-encoded and its fragment (which no client sends) dropped.
fn url(host: &str, path: &str) -> Result<End> {
    let name_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    let host_ok = match host.rsplit_once(':') {
        Some((h, port)) => name_ok(h) && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => name_ok(host),
    };
    if !host_ok {
        return Err(Error::usage(
            format!("{host:?} is not a host name for an Ingress URL"),
            Some(
                "use http://HOST/PATH with HOST a DNS name, e.g. http://aoligei.linux0224.com/"
                    .to_string(),
            ),
        ));
    }
    let path = path.split('#').next().unwrap_or("/");
    Ok(End::Url {
        host: host.to_string(),
        path: percent_encoding::utf8_percent_encode(path, PATH_ESCAPES).to_string(),
    })
}

/// Resolves `text`; `namespace` completes bare names (kubectl's -n).
pub fn resolve(cluster: &Cluster, text: &str, namespace: &str) -> Result<End> {
    if let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    {
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".to_string()));
        return url(host, &path);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(classify_ip(cluster, ip));
    }
    // node:port is a NodePort; ns/name:port a Service port.
    let (base, port) = match text.rsplit_once(':') {
        Some((b, p)) if p.parse::<u16>().is_ok() => (b, p.parse::<u16>().ok()),
        _ => (text, None),
    };
    if let Some(end) = node_end(cluster, base, port)? {
        return Ok(end);
    }
    let (ns, name) = base.split_once('/').unwrap_or((namespace, base));
    if port.is_none()
        && let Some(end) = cluster.pod(ns, name).and_then(pod_end)
    {
        return Ok(end);
    }
    if let Some(svc) = cluster.service(ns, name) {
        return service_end(svc, ns, name, port);
    }
    if !base.contains('/') && base.contains('.') {
        return Ok(End::Dns {
            name: base.to_string(),
        });
    }
    Err(names_nothing(cluster, text, base, ns))
}

/// A node (`NODE`) or one of its NodePorts (`NODE:PORT`), if `base` is a node.
fn node_end(cluster: &Cluster, base: &str, port: Option<u16>) -> Result<Option<End>> {
    if cluster.node(base).is_none() {
        return Ok(None);
    }
    let ip = node_ip(cluster, base);
    Ok(match (port, ip) {
        (Some(port), Some(ip)) => Some(End::NodePort {
            node: base.to_string(),
            ip,
            port,
        }),
        (Some(_), None) => {
            return Err(Error::usage(format!("node {base} has no address"), None));
        }
        (None, Some(ip)) => Some(End::Node {
            node: base.to_string(),
            ip,
        }),
        (None, None) => None,
    })
}

/// A Service by its ClusterIP (a headless one cannot be traced to).
fn service_end(svc: &Service, ns: &str, name: &str, port: Option<u16>) -> Result<End> {
    let ip = svc
        .spec
        .as_ref()
        .and_then(crate::model::cluster::service_ipv4)
        .map(std::net::IpAddr::V4)
        .ok_or_else(|| {
            Error::usage(
                format!("service {ns}/{name} has no ClusterIP (headless?)"),
                Some("trace one of its pods instead".to_string()),
            )
        })?;
    Ok(End::Service {
        namespace: ns.to_string(),
        name: name.to_string(),
        ip,
        port,
    })
}

/// The error for a name that is no pod, Service, node or DNS name, with
/// the names that come close.
fn names_nothing(cluster: &Cluster, text: &str, base: &str, ns: &str) -> Error {
    if base == "outside" {
        return Error::usage(
            "`outside` needs an address",
            Some("give the outside client's IP, e.g. 192.168.56.254".to_string()),
        );
    }
    // Not found where the API server refused to list: not a wrong name,
    // perhaps, but one the reader may not see.
    use crate::model::reading::ApiKind;
    let refused: Vec<String> = cluster
        .unread
        .iter()
        .filter(|u| matches!(u.kind, ApiKind::Pods | ApiKind::Services | ApiKind::Nodes))
        .filter(|u| !u.kind.namespaced() || u.covers(ns))
        .map(|u| u.brief())
        .collect();
    if !refused.is_empty() {
        return Error::env(
            format!(
                "{text:?} is not among what could be read (looked in namespace {ns}): the API server refused {}",
                refused.join(", ")
            ),
            Some("name a pod or Service of a namespace you may read (-n), or ask for the knetdoctor-reader role (`knetdoctor rbac`)".to_string()),
        );
    }
    let qualified = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        Some(format!(
            "{}/{}",
            m.namespace.as_deref()?,
            m.name.as_deref()?
        ))
    };
    let candidates: Vec<String> = cluster
        .pods
        .iter()
        .filter_map(|p| qualified(&p.metadata))
        .chain(
            cluster
                .services
                .iter()
                .filter_map(|s| qualified(&s.metadata)),
        )
        .chain(cluster.nodes.iter().filter_map(|n| n.metadata.name.clone()))
        .collect();
    let hint = crate::suggest::did_you_mean(base, candidates.iter().map(String::as_str))
        .unwrap_or_else(|| "use ns/name, an IP, node:nodePort or http://host/path".to_string());
    Error::usage(
        format!("{text:?} names no pod, service, node or DNS name (looked in namespace {ns})"),
        Some(hint),
    )
}

/// An IP: a pod's, a Service's ClusterIP, a node's, or from outside.
pub fn classify_ip(cluster: &Cluster, ip: IpAddr) -> End {
    if let Some(end) = cluster.pod_by_ip(&ip.to_string()).and_then(pod_end) {
        return end;
    }
    if let Some(svc) = cluster.services.iter().find(|s| {
        s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()) == Some(ip.to_string().as_str())
    }) {
        return End::Service {
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            name: svc.metadata.name.clone().unwrap_or_default(),
            ip,
            port: None,
        };
    }
    if let Some(node) = node_by_ip(cluster, ip) {
        return End::Node { node, ip };
    }
    End::Outside { ip }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_path_cannot_smuggle_headers_or_a_second_request() {
        let End::Url { host, path } = url(
            "aoligei.linux0224.com",
            "/a b\r\nX-Injected: 1\r\n\r\nGET /admin HTTP/1.1#frag",
        )
        .unwrap() else {
            panic!("not a URL")
        };
        assert_eq!(host, "aoligei.linux0224.com");
        assert_eq!(
            path,
            "/a%20b%0D%0AX-Injected:%201%0D%0A%0D%0AGET%20/admin%20HTTP/1.1"
        );
        assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path}");
        for bad in ["evil.com\r\nX: 1", "", "a b", "host:0", "host:99999"] {
            assert!(url(bad, "/").is_err(), "{bad:?} accepted");
        }
        assert!(url("aoligei.linux0224.com:8080", "/x?y=1&z=%41").is_ok());
    }
}
