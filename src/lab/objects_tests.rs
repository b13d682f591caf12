//! The seed cluster's objects (the core's `lab::objects`) as the lab's
//! services and `kubectl` lists see them.

use crate::lab::objects::*;
use crate::lab::services::ingress_routes;
use crate::model::Cluster;

/// The seed cluster's objects (the node state is not needed here).
fn seed() -> Cluster {
    crate::check::fixtures::seed().0
}

#[test]
fn the_ingress_routes_to_the_three_nginx_pods() {
    let c = seed();
    let routes = ingress_routes(&c);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].upstreams.len(), 3);
}

#[test]
fn ingress_to_a_missing_port_has_no_upstream() {
    let mut c = seed();
    c.ingresses = vec![ingress(8080)].into();
    assert!(ingress_routes(&c)[0].upstreams.is_empty());
}

#[test]
fn objects_round_trip_through_kubectl_lists() {
    let c = seed();
    let dir = std::env::temp_dir().join(format!("knetdoctor-objects-{}", std::process::id()));
    crate::inspect::kubectl::write_dir(&c, &dir).unwrap();
    let back = crate::inspect::kubectl::read_dir(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&c).unwrap()
    );
    let text = serde_json::to_value(&c.pods[0]).unwrap();
    assert_eq!(
        (text["apiVersion"].as_str(), text["kind"].as_str()),
        (Some("v1"), Some("Pod"))
    );
}

#[test]
fn malformed_list_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("knetdoctor-bad-{}", std::process::id()));
    crate::inspect::kubectl::write_dir(&seed(), &dir).unwrap();
    let pods = dir.join("pods.json");
    let cases = [
        (
            "{\n \"items\": [ {\"kind\": \"Pod\", \"metadata\": 7} ]\n}\n",
            "item 0 (Pod)",
        ),
        ("{\n \"items\": [ {\"metadata\": {}} ]\n}\n", "has no kind"),
        ("{\n \"items\": [ \n", "line 3"),
    ];
    for (text, want) in cases {
        std::fs::write(&pods, text).unwrap();
        let err = crate::inspect::kubectl::read_dir(&dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pods.json") && err.contains(want), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
