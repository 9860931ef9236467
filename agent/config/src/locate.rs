//! Find where a key path sits in YAML text, so semantic errors (an unknown
//! exporter type, a pipeline naming a missing processor) can point at a
//! line and column like syntax errors do.

/// 1-based line and column of the key at `path` (e.g. `["exporters",
/// "otlp_grpc/x", "endpoint"]`) in block-style YAML; the deepest prefix of
/// the path that is found when the whole path is not (flow-style maps).
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    // The first match of the longest prefix, with that prefix's length: a
    // shorter prefix matched later (the same key name elsewhere in the
    // file) must not replace it.
    let mut best: Option<(usize, (usize, usize))> = None;
    // Indentation of each matched path segment, outermost first.
    let mut matched: Vec<usize> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // Leaving a matched block: a line at or left of its key's indentation.
        while matched.last().is_some_and(|&i| indent <= i) {
            matched.pop();
        }
        let Some(key) = key_of(trimmed) else { continue };
        let depth = matched.len();
        if depth < path.len() && key == path[depth] {
            matched.push(indent);
            let here = (index + 1, indent + 1);
            if matched.len() == path.len() {
                return Some(here);
            }
            if best.is_none_or(|(len, _)| matched.len() > len) {
                best = Some((matched.len(), here));
            }
        }
    }
    best.map(|(_, at)| at)
}

fn key_of(trimmed: &str) -> Option<&str> {
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim();
    Some(
        key.strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
            .unwrap_or(key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
receivers:
  procfs:
    collection_interval: 10s
exporters:
  console: {}
  otlp_grpc/x:
    endpoint: nope
service:
  pipelines:
    metrics/a: { receivers: [procfs], exporters: [console] }
";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(
            locate(YAML, &["exporters", "otlp_grpc/x", "endpoint"]),
            Some((7, 5))
        );
        assert_eq!(locate(YAML, &["receivers", "procfs"]), Some((2, 3)));
    }

    #[test]
    fn falls_back_to_the_deepest_found_prefix() {
        assert_eq!(
            locate(YAML, &["service", "pipelines", "metrics/a", "exporters"]),
            Some((10, 5))
        );
        assert_eq!(locate(YAML, &["nothing"]), None);
        // A key of the path named again later (a pipeline's `receivers`)
        // does not replace the deeper match.
        let text = "receivers:\n  procfs: {}\nservice:\n  pipelines:\n    metrics/a:\n      receivers: [procfs]\n";
        assert_eq!(
            locate(text, &["receivers", "procfs", "root_path"]),
            Some((2, 3))
        );
    }

    #[test]
    fn does_not_match_a_key_of_another_section() {
        // `endpoint` exists only under otlp_grpc/x, not under console.
        assert_eq!(
            locate(YAML, &["exporters", "console", "endpoint"]),
            Some((5, 3))
        );
    }
}
