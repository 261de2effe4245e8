//! `metadata.labels` validation, as Kubernetes' `ValidateLabels`: keys are qualified names (an
//! optional DNS-1123 subdomain prefix and `/`, then a name of at most 63 characters), values at
//! most 63 characters of the same alphabet, or empty. Label selectors match on these, so
//! clients rely on their shape; the messages are Kubernetes' own, word for word.

use std::collections::BTreeMap;

use super::{Cause, Error, Result};

const FIELD: &str = "metadata.labels";
const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
     'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Refuses a stream named `name` whose labels are not valid (422 Invalid, one cause each).
pub fn check(name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    let causes = validate(labels);
    if causes.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid {
        kind: "ImageStream",
        name: name.to_string(),
        causes,
    })
}

/// One cause per problem, on the key or on the value.
pub fn validate(labels: &BTreeMap<String, String>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (key, value) in labels {
        for why in qualified_name_errors(key) {
            causes.push(Cause::invalid(FIELD, key, &why));
        }
        for why in value_errors(value) {
            causes.push(Cause::invalid(FIELD, value, why));
        }
    }
    causes
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-')
            }
            _ => false,
        }
    };
    s.split('.').all(label_ok)
}

/// Kubernetes' `IsQualifiedName`.
fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > PREFIX_MAX {
                    errs.push(format!(
                        "prefix part must be no more than {PREFIX_MAX} characters"
                    ));
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {SUBDOMAIN_MSG}"));
                }
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and \
                 '/' (e.g. 'example.com/MyName')"
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > NAME_MAX {
        errs.push(format!(
            "name part must be no more than {NAME_MAX} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    errs
}

/// Kubernetes' `IsValidLabelValue`.
fn value_errors(value: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if value.len() > NAME_MAX {
        errs.push("must be no more than 63 characters");
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(VALUE_MSG);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(pairs: &[(&str, &str)]) -> Vec<String> {
        let labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate(&labels).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn valid_keys_and_values() {
        assert!(causes(&[
            ("app", "web"),
            ("App.Name_1", ""),
            ("example.com/tier", "front-end"),
            ("a.b-c.d/x", "1.2.3"),
            (&"k".repeat(63), &"v".repeat(63)),
            (&format!("{}/x", "a".repeat(253)), "v"),
        ])
        .is_empty());
    }

    #[test]
    fn invalid_keys_with_kubernetes_messages() {
        assert_eq!(
            causes(&[("-bad", "v")]),
            [
                "metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric \
                 characters, '-', '_' or '.', and must start and end with an alphanumeric \
                 character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                 validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
        let long = causes(&[(&"k".repeat(64), "v")]);
        assert_eq!(long.len(), 1);
        assert!(long[0].ends_with("name part must be no more than 63 characters"));
        let prefixed = causes(&[("Example.com/x", "v")]);
        assert!(prefixed[0].contains("prefix part a lowercase RFC 1123 subdomain"));
        assert!(causes(&[("/x", "v")])[0].ends_with("prefix part must be non-empty"));
        // An empty name part is both empty and not a name, as in Kubernetes.
        assert_eq!(causes(&[("example.com/", "v")]).len(), 2);
        assert!(causes(&[("a/b/c", "v")])[0].contains("a qualified name must consist"));
        assert!(!causes(&[("sp ace", "v")]).is_empty());
        assert!(!causes(&[("ünï", "v")]).is_empty());
    }

    #[test]
    fn invalid_values() {
        let bad = causes(&[("k", "-v")]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("metadata.labels: Invalid value: \"-v\": a valid label must"));
        assert_eq!(
            causes(&[("k", &"v".repeat(64))]),
            [format!(
                "metadata.labels: Invalid value: \"{}\": must be no more than 63 characters",
                "v".repeat(64)
            )]
        );
        assert!(check("s", &BTreeMap::from([("k".into(), "a b".into())])).is_err());
    }
}
