//! Adversarial YAML next to the shipped configs, for the YAML budget's
//! benchmark and peak-memory runs (`docs/BENCHMARKS.md`, "Hostile YAML").

use std::path::Path;

use phoenix_config::yaml::{MAX_DEPTH, MAX_NODES};

/// Anchored lists of `fan_out` aliases to the list before, `levels` deep:
/// a billion laughs, `fan_out^levels` strings once expanded.
pub fn alias_bomb(levels: usize, fan_out: usize) -> String {
    let mut text = format!("l0: &l0 [{}]\n", vec!["lol"; fan_out].join(", "));
    for level in 1..=levels {
        let aliases = vec![format!("*l{}", level - 1); fan_out].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{aliases}]\n"));
    }
    text
}

/// `bytes` of `[`, never closed.
pub fn deep_flow(bytes: usize) -> String {
    "[".repeat(bytes)
}

/// `{a: ` repeated to `bytes`, never closed: the shape libyaml is slowest
/// to refuse (it tracks a possible key at every level).
pub fn deep_flow_mappings(bytes: usize) -> String {
    "{a: ".repeat(bytes / 4)
}

/// Block mappings nested one level a line (`a:`, ` a:`, `  a:`, ...) up to
/// `bytes`.
pub fn deep_block(bytes: usize) -> String {
    let mut text = String::new();
    let mut depth = 0;
    while text.len() < bytes {
        text.push_str(&" ".repeat(depth));
        text.push_str("a:\n");
        depth += 1;
    }
    text
}

/// One scalar of `bytes` bytes.
pub fn huge_scalar(bytes: usize) -> String {
    format!("receivers: {}\n", "x".repeat(bytes))
}

/// The most the budget lets through in the parsed tree: a list of flow
/// sequences nested to the depth limit, as many as the node limit allows
/// (no aliases), so the cost of what passes is measured too.
pub fn largest_within_budget() -> String {
    // The root mapping and the list take two levels; each item is one
    // scalar inside `depth` sequences.
    let depth = MAX_DEPTH - 2;
    let item = format!("  - {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let items = (MAX_NODES - 3) / (depth + 1);
    format!("padding:\n{}", item.repeat(items))
}

/// A shipped config by path under `configs/`.
pub fn shipped(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A case's name and what makes its text.
pub type Case = (&'static str, fn() -> String);

/// Every case, normal configs first, each made only when asked for (a
/// peak-memory run makes just its own).
pub fn cases() -> Vec<Case> {
    vec![
        ("local.yaml", || shipped("local.yaml")),
        ("agent.yaml", || shipped("agent.yaml")),
        ("template process-dynamic-v1", || {
            shipped("templates/process-dynamic-v1.yaml")
        }),
        ("alias bomb 9x9 (1 KB)", || alias_bomb(9, 9)),
        ("alias bomb 9x500 (25 KB)", || alias_bomb(9, 500)),
        ("nested [ (100 KB)", || deep_flow(100_000)),
        ("nested {a: (100 KB)", || deep_flow_mappings(100_000)),
        ("nested block mappings (100 KB)", || deep_block(100_000)),
        ("scalar (10 MB)", || huge_scalar(10 << 20)),
        ("largest tree within budget", largest_within_budget),
    ]
}
