//! `${env:NAME}` substitution, applied to string values after YAML parsing
//! (never to the raw text, so an environment variable cannot inject YAML
//! structure).

use serde_norway::Value;

/// What a substitution pass found.
#[derive(Debug, Default)]
pub struct Substitution {
    /// Variables referenced without a default that are not set.
    pub missing: Vec<String>,
    /// Variables a remote config may not read, with the YAML path of the
    /// value that referenced them (nothing was substituted for them).
    pub refused: Vec<(String, Vec<String>)>,
    /// Every (name, value) substituted: error texts replace these values
    /// by their reference, so no error ever echoes one.
    pub values: Vec<(String, String)>,
    /// The YAML paths of the scalars that read a variable: their values
    /// depend on the environment (the controller, which knows none, leaves
    /// them to the agent).
    pub referenced: Vec<Vec<String>>,
}

/// Replace every `${env:NAME}` (or `${env:NAME:-default}`) in the string
/// scalars of `value`. A scalar that is exactly one reference is re-read as
/// a YAML scalar, so `${env:PORT}` can fill a number. `$$` escapes a `$`.
/// Names `allowed` refuses are not looked up at all.
pub fn substitute(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    allowed: &dyn Fn(&str) -> bool,
) -> Substitution {
    let mut found = Substitution::default();
    let mut path = Vec::new();
    walk(value, &Env { lookup, allowed }, &mut path, &mut found);
    found
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    allowed: &'a dyn Fn(&str) -> bool,
}

fn walk(value: &mut Value, env: &Env, path: &mut Vec<String>, found: &mut Substitution) {
    match value {
        Value::String(s) if s.contains('$') => {
            let whole_reference =
                s.starts_with("${env:") && s.ends_with('}') && s.matches("${").count() == 1;
            if s.contains("${env:") {
                found.referenced.push(path.clone());
            }
            let replaced = expand(s, env, path, found);
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
        Value::Sequence(items) => items.iter_mut().for_each(|v| walk(v, env, path, found)),
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.as_str().unwrap_or("?").to_string());
                walk(v, env, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn expand(s: &str, env: &Env, path: &[String], found: &mut Substitution) -> String {
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
            if !(env.allowed)(name) {
                found.refused.push((name.to_string(), path.to_vec()));
            } else {
                match ((env.lookup)(name), default) {
                    (Some(v), _) => {
                        out.push_str(&v);
                        found.values.push((name.to_string(), v));
                    }
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => found.missing.push(name.to_string()),
                }
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

/// `text` with every substituted value of at least three characters
/// replaced by its `${env:NAME}` reference (shorter ones would blank out
/// ordinary words and numbers, and are no secret).
pub fn redact(text: &str, values: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        if value.chars().count() >= 3 && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &format!("${{env:{name}}}"));
        }
    }
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
        assert!(substitute(&mut v, &env, &|_| true).missing.is_empty());
        assert_eq!(v["a"], Value::String("http://node-1:4317".into()));
        assert_eq!(v["b"], serde_norway::from_str::<Value>("4317").unwrap());
        assert_eq!(v["c"], Value::String("$5".into()));
    }

    #[test]
    fn reports_unset_variables_and_uses_defaults() {
        let mut v: Value = serde_norway::from_str("a: ${env:NOPE}\nb: ${env:NOPE2:-x}").unwrap();
        assert_eq!(
            substitute(&mut v, &env, &|_| true).missing,
            vec!["NOPE".to_string()]
        );
        assert_eq!(v["b"], Value::String("x".into()));
    }

    #[test]
    fn a_value_cannot_inject_structure() {
        let evil = |_: &str| Some("{x: 1}".to_string());
        let mut v: Value = serde_norway::from_str("a: ${env:E}").unwrap();
        substitute(&mut v, &evil, &|_| true);
        assert_eq!(v["a"], Value::String("{x: 1}".into()));
    }

    #[test]
    fn refused_names_are_not_read_and_are_reported_with_their_path() {
        let mut v: Value =
            serde_norway::from_str("exporters:\n  otlp_http:\n    headers: { k: 'Bearer ${env:SECRET:-x}' }\nb: ${env:HOST}")
                .unwrap();
        let read = std::cell::RefCell::new(Vec::new());
        let lookup = |name: &str| {
            read.borrow_mut().push(name.to_string());
            env(name)
        };
        let found = substitute(&mut v, &lookup, &|name| name != "SECRET");
        assert_eq!(
            found.refused,
            vec![(
                "SECRET".to_string(),
                vec![
                    "exporters".to_string(),
                    "otlp_http".into(),
                    "headers".into(),
                    "k".into()
                ]
            )]
        );
        assert_eq!(*read.borrow(), ["HOST"], "a refused variable is never read");
        assert_eq!(
            found.values,
            vec![("HOST".to_string(), "node-1".to_string())]
        );
    }

    #[test]
    fn redaction_puts_the_reference_back() {
        let values = vec![
            ("TOKEN".to_string(), "s3cr3t".to_string()),
            ("N".into(), "1".into()),
        ];
        assert_eq!(
            redact("invalid duration \"s3cr3t\": must be at least 1", &values),
            "invalid duration \"${env:TOKEN}\": must be at least 1"
        );
    }
}
