//! Named configs from `--templates-dir` (`configs/templates/*.yaml`),
//! pushable by name. The directory is read on each request, so a template
//! added or edited there is available without a restart.

use std::path::Path;

/// Template files larger than this are skipped: they are configs, not data.
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

pub use phoenix_api::Template;

/// The templates directory cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the templates directory {dir}")]
pub struct ListError {
    dir: String,
    #[source]
    source: std::io::Error,
}

/// Names are file stems of visible, path-free characters: a name from a
/// request can never reach outside the directory.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn describe(name: &str, content: &str) -> Template {
    let description = content
        .lines()
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    Template {
        name: name.to_string(),
        description,
        hash: phoenix_config::config_hash(content),
        content: None,
    }
}

/// Every template in `dir`, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<Template>, ListError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ListError {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        if !valid_name(name) {
            continue;
        }
        if let Some(t) = read(dir, name) {
            out.push(t);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read(dir: &Path, name: &str) -> Option<Template> {
    let path = dir.join(format!("{name}.yaml"));
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_TEMPLATE_BYTES {
        return None;
    }
    let content = std::fs::read_to_string(&path).ok()?;
    let mut t = describe(name, &content);
    t.content = Some(content);
    Some(t)
}

/// The template `name`, with its content; `None` when there is none.
pub fn get(dir: &Path, name: &str) -> Option<Template> {
    if !valid_name(name) {
        return None;
    }
    read(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_directory() {
        assert!(valid_name("process-basic-v1"));
        assert!(!valid_name("../etc/passwd"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(""));
    }

    #[test]
    fn the_shipped_templates_are_listed_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates");
        let all = list(&dir).unwrap();
        assert!(all.iter().any(|t| t.name == "process-basic-v1"), "{all:?}");
        for t in &all {
            let full = get(&dir, &t.name).unwrap();
            let content = full.content.unwrap();
            assert_eq!(full.hash, phoenix_config::config_hash(&content));
            assert!(!t.description.is_empty(), "{}", t.name);
            phoenix_config::AgentConfig::load_with_env(&content, &|_| None)
                .unwrap_or_else(|e| panic!("template {} is invalid: {e}", t.name));
        }
        assert!(get(&dir, "no-such-template").is_none());
    }
}
