use std::fmt;
use std::sync::Arc;

use super::Str;

/// An attribute value, as OTLP's `AnyValue` restricted to what process
/// metrics use.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A key and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: Str,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: Str, value: Value) -> Self {
        KeyValue { key, value }
    }
}

/// An immutable attribute set. Cloning shares it; "modifying" builds a new set.
///
/// Keys keep the order in which they were added, which exporters preserve.
#[derive(Clone, Default, PartialEq)]
pub struct Attributes(Arc<[KeyValue]>);

impl Attributes {
    pub fn new(pairs: Vec<KeyValue>) -> Self {
        Attributes(pairs.into())
    }

    pub fn empty() -> Self {
        Attributes::default()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|kv| &*kv.key == key).map(|kv| &kv.value)
    }

    /// The value of `key` if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, KeyValue> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[KeyValue] {
        &self.0
    }

    /// Whether both are the very same shared set (a pointer comparison):
    /// what a receiver hands out again for an unchanged process.
    pub fn same(&self, other: &Attributes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A copy with `key` set to `value` (replaced in place, or appended).
    pub fn with(&self, key: Str, value: Value) -> Attributes {
        let mut pairs: Vec<KeyValue> = Vec::with_capacity(self.0.len() + 1);
        let mut replaced = false;
        for kv in self.0.iter() {
            if kv.key == key {
                pairs.push(KeyValue::new(kv.key.clone(), value.clone()));
                replaced = true;
            } else {
                pairs.push(kv.clone());
            }
        }
        if !replaced {
            pairs.push(KeyValue::new(key, value));
        }
        Attributes::new(pairs)
    }

    /// A copy with every pair in `extra` set (replacing existing keys).
    pub fn with_all(&self, extra: &[KeyValue]) -> Attributes {
        if extra.is_empty() {
            return self.clone();
        }
        let mut pairs: Vec<KeyValue> = Vec::with_capacity(self.0.len() + extra.len());
        pairs.extend(
            self.0
                .iter()
                .filter(|kv| !extra.iter().any(|e| e.key == kv.key))
                .cloned(),
        );
        pairs.extend(extra.iter().cloned());
        Attributes::new(pairs)
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|kv| (&kv.key, &kv.value)))
            .finish()
    }
}

impl FromIterator<KeyValue> for Attributes {
    fn from_iter<I: IntoIterator<Item = KeyValue>>(iter: I) -> Self {
        Attributes(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k.into(), Value::Str(v.into()))
    }

    #[test]
    fn with_replaces_existing_key_and_keeps_order() {
        let a = Attributes::new(vec![kv("a", "1"), kv("b", "2")]);
        let b = a.with("a".into(), Value::Int(9));
        assert_eq!(b.get("a"), Some(&Value::Int(9)));
        assert_eq!(b.iter().map(|kv| &*kv.key).collect::<Vec<_>>(), ["a", "b"]);
        // The original is untouched.
        assert_eq!(a.get_str("a"), Some("1"));
    }

    #[test]
    fn with_all_appends_new_keys() {
        let a = Attributes::new(vec![kv("a", "1")]);
        let b = a.with_all(&[kv("b", "2"), kv("a", "3")]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get_str("a"), Some("3"));
        assert_eq!(b.get_str("b"), Some("2"));
    }
}
