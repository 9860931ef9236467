//! Label selectors as text.

use std::collections::BTreeMap;

/// `k=v[,k=v...]`, as in `?label=` and phoenixctl's `--selector`. Blank
/// pairs are skipped; keys and values are trimmed.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("label selector {pair:?} must be key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("label selector {pair:?} has an empty key"));
        }
        out.insert(k.to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let l = parse_labels("env=prod, zone=a").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["zone"], "a");
        assert!(parse_labels("env").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
