//! "Did you mean": the one place a name that matched nothing is compared
//! with the names that exist (pods, Services, nodes, lab nodes), so every
//! command suggests the same way.

/// The hint for `wanted`, which names nothing: the candidates close to it
/// (a substring either way, or at most two edits; for `ns/name`
/// candidates the name alone counts too), sorted, at most five.
pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let bare = wanted.rsplit('/').next().unwrap_or(wanted);
    let mut close: Vec<&str> = candidates
        .into_iter()
        .filter(|c| similar(c, wanted) || similar(c.rsplit('/').next().unwrap_or(c), bare))
        .collect();
    close.sort_unstable();
    close.dedup();
    close.truncate(5);
    (!close.is_empty()).then(|| format!("did you mean {}?", close.join(" or ")))
}

/// Close enough to be a typo or a shortening of the other.
fn similar(a: &str, b: &str) -> bool {
    a.contains(b) || b.contains(a) || edit_distance(a, b) <= 2
}

/// Levenshtein distance, one row at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_shortenings_are_suggested_others_not() {
        let nodes = ["k8s-master-10", "k8s-node-11", "k8s-node-12"];
        assert_eq!(
            did_you_mean("k8s-node-21", nodes).as_deref(),
            Some("did you mean k8s-node-11 or k8s-node-12?")
        );
        assert_eq!(
            did_you_mean("node-12", nodes).as_deref(),
            Some("did you mean k8s-node-12?")
        );
        assert_eq!(did_you_mean("worker-7", nodes), None);
        // A bare name finds its namespaced object.
        assert_eq!(
            did_you_mean("ngnix", ["default/nginx", "kube-system/coredns"]).as_deref(),
            Some("did you mean default/nginx?")
        );
    }
}
