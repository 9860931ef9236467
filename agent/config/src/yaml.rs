//! Budgets on YAML from outside, checked before it is parsed into memory.
//!
//! `serde_norway` (libyaml underneath) loads a whole document into events
//! before it looks at depth, and copies an anchored node once for every
//! alias: a 25 KB alias bomb grows to gigabytes, and deep nesting costs time
//! in the square of the depth before its own limit of 128 refuses it.
//! [`check_budget`] runs first, on the raw text, with `saphyr-parser`'s
//! streaming event parser: it stops at the first event over a budget, so a
//! hostile input costs at most one pass over the bytes it is allowed to have,
//! and memory in proportion to the open nesting and the anchors seen.
//!
//! Alias expansion is counted, not just aliases: every anchored node's size
//! (its nodes and scalar bytes, its own aliases expanded) is recorded when it
//! ends, and an alias adds that size to every node around it. A billion
//! laughs made of a few dozen aliases is refused as what it expands to.
//!
//! `serde-saphyr`'s budget pre-scan was the other candidate: it counts
//! aliases and their ratio to anchors but not what they expand to (that is
//! left to its own deserializer, which the loader does not use), so nine
//! levels of nine aliases pass it.

use saphyr_parser::{Event, Marker, Parser, ScanError};

use crate::ConfigError;

/// Largest YAML text accepted, in bytes: the controller's request body
/// limit and the largest Kubernetes ConfigMap. It bounds the one pass over
/// the text; for ordinary YAML [`MAX_NODES`] binds first, at a few hundred
/// KB. The shipped configs are about 3 KB.
pub const MAX_BYTES: usize = 1 << 20;

/// Deepest nesting of mappings and sequences. Real configs nest about 6
/// levels (`exporters.x.tls.ca_file`, a processor's rule lists); 32 leaves
/// room for anything hand-written while keeping the parser's per-level cost
/// far below `serde_norway`'s own limit of 128.
pub const MAX_DEPTH: usize = 32;

/// Longest single scalar, in bytes. Scalars are names, regexes, paths and,
/// in experiment definitions, an inline agent config: 256 KiB is about 80
/// times the largest shipped config.
pub const MAX_SCALAR_BYTES: usize = 256 << 10;

/// Most nodes (scalars, mappings, sequences) once every alias is expanded:
/// what the parsed tree will hold. Shipped configs have a few hundred; the
/// largest tree this lets through costs about 10 MiB while it is parsed,
/// well inside the agent's 40 MiB memory target.
pub const MAX_NODES: usize = 20_000;

/// Most scalar bytes once every alias is expanded, so an alias of a long
/// scalar counts as what it copies (4 times [`MAX_BYTES`]).
pub const MAX_EXPANDED_SCALAR_BYTES: usize = 4 * MAX_BYTES;

/// What a node costs once parsed: itself and everything under it, aliases
/// expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    scalar_bytes: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.scalar_bytes = self.scalar_bytes.saturating_add(other.scalar_bytes);
    }

    fn since(self, start: Size) -> Size {
        Size {
            nodes: self.nodes - start.nodes,
            scalar_bytes: self.scalar_bytes - start.scalar_bytes,
        }
    }
}

/// A mapping or sequence still open: its anchor (0: none) and the running
/// total when it started, so its own size is the difference at its end.
struct Open {
    anchor: usize,
    start: Size,
}

/// Check `text` against the budgets above in one pass, before any tree is
/// built. Errors say which budget and where, never the content.
pub fn check_budget(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_BYTES {
        return Err(over(
            format!(
                "the text is {} bytes, more than the {MAX_BYTES} allowed",
                text.len()
            ),
            None,
        ));
    }
    // The running size of everything seen, aliases expanded: a node that
    // starts and ends inside an anchored one adds to both.
    let mut total = Size::default();
    let mut open: Vec<Open> = Vec::new();
    // By anchor id (saphyr numbers anchors from 1 in order): the anchored
    // node's size once it has ended, `None` while it is still open.
    let mut anchors: Vec<Option<Size>> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(syntax_error)?;
        let at = Some(&span.start);
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() == MAX_DEPTH {
                    return Err(over(format!("nesting deeper than {MAX_DEPTH} levels"), at));
                }
                total.add(Size {
                    nodes: 1,
                    scalar_bytes: 0,
                });
                if anchor > 0 {
                    set_anchor(&mut anchors, anchor, None);
                }
                open.push(Open {
                    anchor,
                    start: total,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(o) = open.pop()
                    && o.anchor > 0
                {
                    let mut size = total.since(o.start);
                    size.nodes += 1; // the collection itself, counted before `start`
                    set_anchor(&mut anchors, o.anchor, Some(size));
                }
            }
            Event::Scalar(value, _, anchor, _) => {
                if value.len() > MAX_SCALAR_BYTES {
                    return Err(over(
                        format!("a scalar longer than {MAX_SCALAR_BYTES} bytes"),
                        at,
                    ));
                }
                let size = Size {
                    nodes: 1,
                    scalar_bytes: value.len(),
                };
                total.add(size);
                if anchor > 0 {
                    set_anchor(&mut anchors, anchor, Some(size));
                }
            }
            Event::Alias(anchor) => match anchors.get(anchor).copied().flatten() {
                Some(size) => total.add(size),
                None => {
                    return Err(over(
                        "an alias inside the node it refers to".to_string(),
                        at,
                    ));
                }
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        if total.nodes > MAX_NODES {
            return Err(over(
                format!("more than {MAX_NODES} nodes once aliases are expanded"),
                at,
            ));
        }
        if total.scalar_bytes > MAX_EXPANDED_SCALAR_BYTES {
            return Err(over(
                format!(
                    "more than {MAX_EXPANDED_SCALAR_BYTES} bytes of scalars once aliases are expanded"
                ),
                at,
            ));
        }
    }
    Ok(())
}

fn set_anchor(anchors: &mut Vec<Option<Size>>, id: usize, size: Option<Size>) {
    if anchors.len() <= id {
        anchors.resize(id + 1, None);
    }
    anchors[id] = size;
}

fn over(message: String, at: Option<&Marker>) -> ConfigError {
    ConfigError {
        component: None,
        field: None,
        message: format!("YAML budget: {message}"),
        location: at.map(location),
    }
}

/// The streaming parser refuses the text before the budget is known: that
/// is the answer, since the text is not YAML either way.
fn syntax_error(e: ScanError) -> ConfigError {
    ConfigError {
        component: None,
        field: None,
        message: format!("invalid YAML: {}", e.info()),
        location: Some(location(e.marker())),
    }
}

/// saphyr's lines are 1-based and its columns 0-based; ours are both 1-based.
fn location(m: &Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentConfig;

    fn refused(text: &str) -> ConfigError {
        check_budget(text).expect_err("over budget")
    }

    /// Nine anchored lists of `fan_out` aliases to the one before: a
    /// billion laughs, 9^levels strings once expanded.
    fn alias_bomb(levels: usize, fan_out: usize) -> String {
        let mut text = format!("l0: &l0 [{}]\n", vec!["lol"; fan_out].join(", "));
        for level in 1..=levels {
            let aliases = vec![format!("*l{}", level - 1); fan_out].join(", ");
            text.push_str(&format!("l{level}: &l{level} [{aliases}]\n"));
        }
        text
    }

    #[test]
    fn a_small_alias_bomb_is_refused_for_what_it_expands_to() {
        let bomb = alias_bomb(9, 9);
        assert!(bomb.len() < 1200, "{} bytes", bomb.len());
        let e = refused(&bomb);
        assert_eq!(
            e.message,
            format!("YAML budget: more than {MAX_NODES} nodes once aliases are expanded")
        );
        // Levels 0 to 3 (lines 1 to 4) expand to about 8,300 nodes; each
        // alias of level 3 on line 5 adds 7,381 more.
        assert_eq!(e.location.map(|(line, _)| line), Some(5));
        // The loader refuses it the same way, before serde_norway sees it.
        assert_eq!(AgentConfig::load(&bomb).unwrap_err().0, vec![e]);
    }

    #[test]
    fn a_wide_alias_bomb_is_refused_at_its_first_aliases() {
        let bomb = alias_bomb(9, 500);
        assert!(
            (20_000..30_000).contains(&bomb.len()),
            "{} bytes",
            bomb.len()
        );
        let e = refused(&bomb);
        assert!(e.message.contains("once aliases are expanded"), "{e}");
        // 500 aliases of a 501-node list on line 2.
        assert_eq!(e.location.map(|(line, _)| line), Some(2));
    }

    #[test]
    fn aliases_of_a_long_scalar_count_its_bytes() {
        let long = "x".repeat(200_000);
        let copies = vec!["*s"; 30].join(", ");
        let e = refused(&format!("s: &s {long}\ncopies: [{copies}]\n"));
        assert_eq!(
            e.message,
            format!(
                "YAML budget: more than {MAX_EXPANDED_SCALAR_BYTES} bytes of scalars once aliases are expanded"
            )
        );
    }

    #[test]
    fn an_alias_inside_its_own_anchor_is_refused() {
        let e = refused("a: &a [1, *a]\n");
        assert_eq!(
            e.message,
            "YAML budget: an alias inside the node it refers to"
        );
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_the_first_level_too_deep() {
        let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let e = refused(&nested);
        assert_eq!(
            e.to_string(),
            "YAML budget: nesting deeper than 32 levels (line 1, column 33)"
        );
        // 100 KB of `[` or `{a: ` never closed: saphyr's own flow limit
        // (255 levels) refuses them while looking ahead for a key, before
        // the budget does. (libyaml took 0.7 s and 2.2 s to refuse them.)
        let e = refused(&"[".repeat(100_000));
        assert_eq!(e.message, "invalid YAML: recursion limit exceeded");
        assert_eq!(e.location, Some((1, 256)));
        let e = refused(&"{a: ".repeat(25_000));
        assert_eq!(e.message, "invalid YAML: recursion limit exceeded");
    }

    #[test]
    fn deep_block_mappings_are_refused_at_the_first_level_too_deep() {
        let mut text = String::new();
        for depth in 0.. {
            if text.len() >= 100_000 {
                break;
            }
            text.push_str(&" ".repeat(depth));
            text.push_str("a:\n");
        }
        let e = refused(&text);
        assert_eq!(
            e.message,
            format!("YAML budget: nesting deeper than {MAX_DEPTH} levels")
        );
        assert_eq!(e.location, Some((MAX_DEPTH + 1, MAX_DEPTH + 1)));
        // Nesting at the limit is fine.
        let at_limit: String = text
            .lines()
            .take(MAX_DEPTH)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(check_budget(&at_limit), Ok(()));
    }

    #[test]
    fn a_huge_text_is_refused_by_its_size_alone() {
        let text = format!("a: {}\n", "x".repeat(10 << 20));
        let e = refused(&text);
        assert_eq!(
            e.message,
            format!(
                "YAML budget: the text is {} bytes, more than the {MAX_BYTES} allowed",
                text.len()
            )
        );
        assert_eq!(e.location, None);
        assert_eq!(AgentConfig::load(&text).unwrap_err().0, vec![e]);
    }

    #[test]
    fn a_scalar_over_its_limit_is_refused_where_it_is() {
        let text = format!("a: 1\nb: {}\n", "x".repeat(MAX_SCALAR_BYTES + 1));
        let e = refused(&text);
        assert_eq!(
            e.message,
            format!("YAML budget: a scalar longer than {MAX_SCALAR_BYTES} bytes")
        );
        assert_eq!(e.location, Some((2, 4)));
    }

    #[test]
    fn errors_never_echo_the_content() {
        let secret = "s3cr3t-token";
        for text in [
            format!("{}{secret}", "[".repeat(40)),
            format!("a: {secret}{}\n", "x".repeat(MAX_SCALAR_BYTES)),
            format!("{}\nz: {secret}\n", alias_bomb(9, 9)),
        ] {
            let e = refused(&text);
            assert!(!e.to_string().contains(secret), "{e}");
        }
    }

    #[test]
    fn anchors_and_aliases_within_budget_are_fine() {
        let text = "defaults: &d { k: 10, score: { cpu: 2 } }\nfirst: *d\nsecond: *d\n";
        assert_eq!(check_budget(text), Ok(()));
    }

    #[test]
    fn every_shipped_config_is_within_budget() {
        let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut dirs = vec![configs];
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert_eq!(check_budget(&text), Ok(()), "{}", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "only {checked} configs found");
        assert_eq!(check_budget(crate::EMBEDDED_DEFAULT), Ok(()));
    }
}
