//! Fuzzy search over what a trace can start or end at (pods, Services, DNS
//! names, ingress URLs, nodes), ranked by nucleo's matcher — the one helix
//! uses — so `ngx` finds `test-svc-ns/linux0224-nginx`. Pure.

use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher};

use super::resources::TraceTarget;

/// How many matches the picker keeps (the screen shows fewer).
pub const KEEP: usize = 200;

/// The indexes of the best matches of `query` among `targets`, best
/// first; an empty query keeps the first [`KEEP`] in list order.
pub fn rank(targets: &[TraceTarget], query: &str) -> Vec<usize> {
    if query.trim().is_empty() {
        return (0..targets.len().min(KEEP)).collect();
    }
    let mut matcher = Matcher::new(Config::DEFAULT.match_paths());
    let pattern = Pattern::parse(query, CaseMatching::Smart, Normalization::Smart);
    let mut scored: Vec<(u32, usize)> = Vec::new();
    let mut buf = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let hay = nucleo_matcher::Utf32Str::new(&t.text, &mut buf);
        if let Some(score) = pattern.score(hay, &mut matcher) {
            scored.push((score, i));
        }
    }
    // Best score first; among equals, shorter text (the closer name), then list order.
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(targets[a.1].text.len().cmp(&targets[b.1].text.len()))
            .then(a.1.cmp(&b.1))
    });
    scored.truncate(KEEP);
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::resources::Kind;

    fn t(kind: Kind, text: &str) -> TraceTarget {
        TraceTarget {
            kind,
            text: text.into(),
        }
    }

    #[test]
    fn letters_in_order_find_the_name_and_the_closest_ranks_first() {
        let targets = vec![
            t(Kind::Pod, "kube-system/coredns-6d8c4cb4d-8zq4n"),
            t(Kind::Service, "test-svc-ns/linux0224-nginx"),
            t(Kind::Dns, "linux0224-nginx.test-svc-ns.svc.cluster.local"),
            t(Kind::Pod, "default/busybox"),
        ];
        let r = rank(&targets, "ngx");
        assert_eq!(r.first(), Some(&1), "{r:?}");
        assert!(r.contains(&2) && !r.contains(&3));
        assert_eq!(rank(&targets, "busy"), vec![3]);
        assert!(rank(&targets, "zzzz").is_empty());
        assert_eq!(rank(&targets, "").len(), 4);
    }
}
