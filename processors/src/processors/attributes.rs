//! `attributes`: ordered actions on resource attributes, mostly to cut the
//! cardinality that per-process attributes (pid, command line) cost.
//!
//! ```yaml
//! attributes/slim:
//!   actions:
//!     - { action: delete, key: process.pid }
//!     - { action: hash, key: process.command_line }
//!     - { action: truncate, key: process.executable.path, max_length: 64 }
//!     - { action: rename, key: process.owner, to: user }
//!     - { action: insert, key: team, value: payments }
//!     - { action: keep_only, keys: [process.executable.name, user, team] }
//! ```
//!
//! Actions apply to each resource's own attributes, not to the batch's
//! common attributes (`host.name`, `phoenix.pipeline`): those are one value
//! per host and add no cardinality. `keep_only` never removes `phoenix.*`
//! attributes (the priority tag must survive for later processors).
//! `insert` sets a key only where it is absent (as in the OpenTelemetry
//! Collector). `hash` replaces a value by the 16 hex digits of its 64-bit
//! FNV-1a hash: stable across hosts and restarts, so a hashed command line
//! still groups, but NOT cryptographic: short values such as pids or user
//! names can be recovered by hashing every candidate.

use std::fmt::Write as _;

use serde::Deserialize;

use super::into_result;
use crate::hash::fnv1a;
use crate::model::{Batch, KeyValue, Str, Value};
use crate::problem::Problem;
use crate::processor::Processor;

/// A value for `insert`, written as any YAML scalar.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum InsertValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
}

impl InsertValue {
    fn to_value(&self) -> Value {
        match self {
            InsertValue::Bool(b) => Value::Bool(*b),
            InsertValue::Int(i) => Value::Int(*i),
            InsertValue::Double(d) => Value::Double(*d),
            InsertValue::Str(s) => Value::Str(s.as_str().into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttributeAction {
    Delete { key: String },
    KeepOnly { keys: Vec<String> },
    Rename { key: String, to: String },
    Hash { key: String },
    Truncate { key: String, max_length: usize },
    Insert { key: String, value: InsertValue },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// Applied in order to every resource.
    #[serde(default)]
    pub actions: Vec<AttributeAction>,
}

const PHOENIX_PREFIX: &str = "phoenix.";

impl AttributesConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, action) in self.actions.iter().enumerate() {
            let mut empty = |what: &str, s: &str| {
                if s.is_empty() {
                    problems.push(Problem::sentence(
                        format!("actions[{i}].{what}"),
                        "is empty",
                    ));
                }
            };
            match action {
                AttributeAction::Delete { key }
                | AttributeAction::Hash { key }
                | AttributeAction::Insert { key, .. } => empty("key", key),
                AttributeAction::KeepOnly { keys } => {
                    if keys.is_empty() {
                        problems.push(Problem::sentence(
                            format!("actions[{i}].keys"),
                            "is empty (keep_only would remove every attribute but phoenix.*)",
                        ));
                    }
                    for k in keys {
                        if k.is_empty() {
                            problems.push(Problem::sentence(
                                format!("actions[{i}].keys"),
                                "has an empty key",
                            ));
                        }
                    }
                }
                AttributeAction::Rename { key, to } => {
                    empty("key", key);
                    empty("to", to);
                }
                AttributeAction::Truncate { key, max_length } => {
                    empty("key", key);
                    if *max_length == 0 {
                        problems.push(Problem::sentence(
                            format!("actions[{i}].max_length"),
                            "must be at least 1 (use delete to remove the attribute)",
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// An action with its strings made shareable once, at build time.
#[derive(Debug)]
enum Compiled {
    Delete(Str),
    KeepOnly(Vec<Str>),
    Rename(Str, Str),
    Hash(Str),
    Truncate(Str, usize),
    Insert(Str, Value),
}

/// The `attributes` processor.
#[derive(Debug)]
pub struct AttributeActions {
    actions: Vec<Compiled>,
    scratch: Vec<KeyValue>,
    text: String,
}

impl AttributeActions {
    pub fn new(config: &AttributesConfig) -> Result<AttributeActions, String> {
        let s = |k: &String| Str::from(k.as_str());
        let actions = config
            .actions
            .iter()
            .map(|a| match a {
                AttributeAction::Delete { key } => Compiled::Delete(s(key)),
                AttributeAction::KeepOnly { keys } => {
                    Compiled::KeepOnly(keys.iter().map(s).collect())
                }
                AttributeAction::Rename { key, to } => Compiled::Rename(s(key), s(to)),
                AttributeAction::Hash { key } => Compiled::Hash(s(key)),
                AttributeAction::Truncate { key, max_length } => {
                    Compiled::Truncate(s(key), *max_length)
                }
                AttributeAction::Insert { key, value } => {
                    Compiled::Insert(s(key), value.to_value())
                }
            })
            .collect();
        into_result(
            AttributeActions {
                actions,
                scratch: Vec::new(),
                text: String::new(),
            },
            config.validate(),
        )
    }

    /// Apply every action to `scratch`; whether anything changed.
    fn apply(&mut self) -> bool {
        let attrs = &mut self.scratch;
        let position = |attrs: &[KeyValue], key: &Str| attrs.iter().position(|kv| kv.key == *key);
        let mut changed = false;
        for action in &self.actions {
            match action {
                Compiled::Delete(key) => {
                    if let Some(i) = position(attrs, key) {
                        attrs.remove(i);
                        changed = true;
                    }
                }
                Compiled::KeepOnly(keys) => {
                    let before = attrs.len();
                    attrs.retain(|kv| kv.key.starts_with(PHOENIX_PREFIX) || keys.contains(&kv.key));
                    changed |= attrs.len() != before;
                }
                Compiled::Rename(key, to) => {
                    if key == to {
                        continue;
                    }
                    if position(attrs, key).is_some() {
                        // The renamed value replaces whatever `to` held.
                        if let Some(j) = position(attrs, to) {
                            attrs.remove(j);
                        }
                        if let Some(i) = position(attrs, key) {
                            attrs[i].key = to.clone();
                        }
                        changed = true;
                    }
                }
                Compiled::Hash(key) => {
                    if let Some(i) = position(attrs, key) {
                        let kv = &mut attrs[i];
                        let hash = match &kv.value {
                            Value::Str(s) => fnv1a(s.as_bytes()),
                            other => {
                                self.text.clear();
                                let _ = write!(self.text, "{other}");
                                fnv1a(self.text.as_bytes())
                            }
                        };
                        kv.value = Value::Str(hex16(hash));
                        changed = true;
                    }
                }
                Compiled::Truncate(key, max_length) => {
                    if let Some(i) = position(attrs, key)
                        && let Value::Str(s) = &attrs[i].value
                        && let Some((cut, _)) = s.char_indices().nth(*max_length)
                    {
                        let truncated = Str::from(&s[..cut]);
                        attrs[i].value = Value::Str(truncated);
                        changed = true;
                    }
                }
                Compiled::Insert(key, value) => {
                    if position(attrs, key).is_none() {
                        attrs.push(KeyValue::new(key.clone(), value.clone()));
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

/// 16 lowercase hex digits, without the intermediate String of `format!`.
fn hex16(v: u64) -> Str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    Str::from(std::str::from_utf8(&buf).unwrap_or_default())
}

impl Processor for AttributeActions {
    fn process(&mut self, batch: &mut Batch) {
        if self.actions.is_empty() {
            return;
        }
        for resource in &mut batch.resources {
            self.scratch.clear();
            self.scratch.extend(resource.attributes.iter().cloned());
            if self.apply() {
                // Drain is exact-sized: one allocation for the new set.
                resource.attributes = self.scratch.drain(..).collect();
            }
        }
        self.scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex16_pads_and_orders_digits() {
        assert_eq!(&*hex16(0xab), "00000000000000ab");
        assert_eq!(&*hex16(u64::MAX), "ffffffffffffffff");
    }
}
