//! The shipped pipeline templates (`configs/templates/`), for benchmarks.

use std::path::Path;

/// Every template, in the order the docs list them.
pub const TEMPLATES: &[&str] = &[
    "process-basic-v1",
    "process-standard-v1",
    "process-aggressive-v1",
    "process-critical-v1",
    "process-dynamic-v1",
];

/// The text of template `name`.
pub fn template_text(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/templates");
    std::fs::read_to_string(root.join(format!("{name}.yaml")))
        .unwrap_or_else(|e| panic!("template {name}: {e}"))
}
