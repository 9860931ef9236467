//! `${env:NAME}` substitution, applied to string values after YAML parsing
//! (never to the raw text, so an environment variable cannot inject YAML
//! structure).

use serde_norway::Value;

/// Replace every `${env:NAME}` (or `${env:NAME:-default}`) in the string
/// scalars of `value`. A scalar that is exactly one reference is re-read as
/// a YAML scalar, so `${env:PORT}` can fill a number. `$$` escapes a `$`.
/// Returns the names of unset variables without a default.
pub fn substitute(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut missing = Vec::new();
    walk(value, lookup, &mut missing);
    missing
}

fn walk(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>, missing: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains('$') => {
            let whole_reference =
                s.starts_with("${env:") && s.ends_with('}') && s.matches("${").count() == 1;
            let replaced = expand(s, lookup, missing);
            // The default after `:-` is outside text too: re-read it only
            // within the budget (a bomb stays a string, which then fails
            // the field's type).
            *value = if whole_reference {
                crate::yaml::check_budget(&replaced)
                    .ok()
                    .and_then(|()| serde_norway::from_str::<Value>(&replaced).ok())
                    .filter(|v| {
                        !matches!(v, Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_))
                    })
                    .unwrap_or(Value::String(replaced))
            } else {
                Value::String(replaced)
            };
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| walk(v, lookup, missing)),
        Value::Mapping(map) => map.values_mut().for_each(|v| walk(v, lookup, missing)),
        _ => {}
    }
}

fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>, missing: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${env:")
            && let Some(end) = body.find('}')
        {
            let spec = &body[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => missing.push(name.to_string()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("node-1".into()),
            "PORT" => Some("4317".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_in_strings_and_types_whole_references() {
        let mut v: Value =
            serde_norway::from_str("a: 'http://${env:HOST}:${env:PORT}'\nb: ${env:PORT}\nc: '$$5'")
                .unwrap();
        assert!(substitute(&mut v, &env).is_empty());
        assert_eq!(v["a"], Value::String("http://node-1:4317".into()));
        assert_eq!(v["b"], serde_norway::from_str::<Value>("4317").unwrap());
        assert_eq!(v["c"], Value::String("$5".into()));
    }

    #[test]
    fn reports_unset_variables_and_uses_defaults() {
        let mut v: Value = serde_norway::from_str("a: ${env:NOPE}\nb: ${env:NOPE2:-x}").unwrap();
        assert_eq!(substitute(&mut v, &env), vec!["NOPE".to_string()]);
        assert_eq!(v["b"], Value::String("x".into()));
    }

    #[test]
    fn a_value_cannot_inject_structure() {
        let evil = |_: &str| Some("{x: 1}".to_string());
        let mut v: Value = serde_norway::from_str("a: ${env:E}").unwrap();
        substitute(&mut v, &evil);
        assert_eq!(v["a"], Value::String("{x: 1}".into()));
    }
}
