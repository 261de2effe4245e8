//! `labelSelector` and `fieldSelector` list options, parsed once at the edge.
//!
//! Label selectors take the whole Kubernetes grammar (equality- and set-based:
//! `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`), because `kubectl -l`
//! users type all of it and a half-supported grammar would silently match the wrong objects.
//! Field selectors support `metadata.name` and `metadata.namespace` with `=`, `==` and `!=`;
//! any other field is refused (400) rather than ignored, for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Why a selector did not parse; the path parser turns it into a 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError(msg.into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    /// Also matches objects without the key, as in Kubernetes.
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    /// Also matches objects without the key, as in Kubernetes.
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use LabelRequirement as R;
        match self {
            R::Equals(k, v) => labels.get(k) == Some(v),
            R::NotEquals(k, v) => labels.get(k) != Some(v),
            R::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            R::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            R::Exists(k) => labels.contains_key(k),
            R::NotExists(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LabelRequirement as R;
        let set = |vs: &BTreeSet<String>| match vs.iter().cloned().collect::<Vec<_>>().join(",") {
            // The set holding only the empty value: `()` would read back as an empty set, which
            // is refused (property tests found it), so the empty value is written as `(,)`.
            joined if joined.is_empty() && !vs.is_empty() => ",".to_string(),
            joined => joined,
        };
        match self {
            R::Equals(k, v) => write!(f, "{k}={v}"),
            R::NotEquals(k, v) => write!(f, "{k}!={v}"),
            R::In(k, vs) => write!(f, "{k} in ({})", set(vs)),
            R::NotIn(k, vs) => write!(f, "{k} notin ({})", set(vs)),
            R::Exists(k) => write!(f, "{k}"),
            R::NotExists(k) => write!(f, "!{k}"),
        }
    }
}

/// A parsed `labelSelector`: all requirements must hold (AND). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_top_level(s)?
            .into_iter()
            .map(|term| {
                parse_label_term(term.trim()).map_err(|e| {
                    SelectorError(format!(
                        "unable to parse requirement {:?}: {}",
                        term.trim(),
                        e.0
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two terms).
fn split_top_level(s: &str) -> Result<Vec<&str>, SelectorError> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| SelectorError(format!("unbalanced ')' in selector {s:?}")))?
            }
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return err(format!("unbalanced '(' in selector {s:?}"));
    }
    terms.push(&s[start..]);
    Ok(terms)
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, SelectorError> {
    if term.is_empty() {
        return err("empty requirement");
    }
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(label_key(key.trim())?));
    }
    if let Some(open) = term.find('(') {
        let inner = term[open..]
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| {
                SelectorError("a value set must be a single '(...)' at the end".into())
            })?;
        let mut head = term[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return err("expected '<key> in (<values>)' or '<key> notin (<values>)'");
        };
        let key = label_key(key)?;
        let values = inner
            .split(',')
            .map(|v| label_value(v.trim()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if inner.trim().is_empty() {
            return err("for 'in' and 'notin', the value set can't be empty");
        }
        return match op {
            "in" => Ok(LabelRequirement::In(key, values)),
            "notin" => Ok(LabelRequirement::NotIn(key, values)),
            other => err(format!(
                "unknown set operator {other:?}, expected 'in' or 'notin'"
            )),
        };
    }
    for (op, not) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = term.split_once(op) {
            let (key, value) = (label_key(k.trim())?, label_value(v.trim())?);
            return Ok(if not {
                LabelRequirement::NotEquals(key, value)
            } else {
                LabelRequirement::Equals(key, value)
            });
        }
    }
    if term.contains(['<', '>']) {
        return err("the 'gt' and 'lt' operators are not supported");
    }
    Ok(LabelRequirement::Exists(label_key(term)?))
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn label_key(k: &str) -> Result<String, SelectorError> {
    let ok = match k.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(k),
    };
    if ok {
        Ok(k.to_string())
    } else {
        err(format!(
            "invalid label key {k:?}: must be an optional DNS subdomain prefix and '/', then 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

fn label_value(v: &str) -> Result<String, SelectorError> {
    if v.is_empty() || is_label_name(v) {
        Ok(v.to_string())
    } else {
        err(format!(
            "invalid label value {v:?}: must be empty or 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

/// The fields berth can select on (the metadata every object has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Namespace,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "metadata.name",
            Field::Namespace => "metadata.namespace",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: Field,
    /// `true` for `!=`.
    pub negated: bool,
    pub value: String,
}

/// A parsed `fieldSelector`: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_escaped(s)?
            .into_iter()
            .map(|(lhs, negated, value)| {
                let field = match lhs.trim() {
                    "metadata.name" => Field::Name,
                    "metadata.namespace" => Field::Namespace,
                    other => return err(format!("field label not supported: {other}")),
                };
                Ok(FieldRequirement {
                    field,
                    negated,
                    value,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// `namespace` is `None` (treated as `""`) for cluster-scoped objects, as in Kubernetes.
    pub fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match r.field {
                Field::Name => name,
                Field::Namespace => namespace.unwrap_or(""),
            };
            (actual == r.value) != r.negated
        })
    }

    /// The name pinned by `metadata.name=<x>`, so a handler can look up one object instead of
    /// scanning (client-go watches a single object this way).
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == Field::Name && !r.negated)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.negated { "!=" } else { "=" };
                format!("{}{op}{}", r.field.as_str(), escape_field_value(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn escape_field_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits `a=b,c!=d` into `(lhs, negated, value)` terms, honouring the field-selector
/// escapes `\\`, `\,`, `\=` and `\!` in values.
fn split_escaped(s: &str) -> Result<Vec<(String, bool, String)>, SelectorError> {
    let mut terms = Vec::new();
    for raw in split_unescaped_commas(s)? {
        let (lhs, negated, rhs) = if let Some(i) = find_unescaped(&raw, "!=") {
            (&raw[..i], true, &raw[i + 2..])
        } else if let Some(i) = find_unescaped(&raw, "==") {
            (&raw[..i], false, &raw[i + 2..])
        } else if let Some(i) = find_unescaped(&raw, "=") {
            (&raw[..i], false, &raw[i + 1..])
        } else {
            return err(format!(
                "invalid field selector term {raw:?}: expected <field>=<value> or <field>!=<value>"
            ));
        };
        terms.push((lhs.to_string(), negated, unescape(rhs)?));
    }
    Ok(terms)
}

fn split_unescaped_commas(s: &str) -> Result<Vec<String>, SelectorError> {
    let mut terms = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or_else(|| {
                    SelectorError(format!("trailing '\\' in field selector {s:?}"))
                })?;
                let last = terms.last_mut().expect("never empty");
                last.push('\\');
                last.push(next);
            }
            ',' => terms.push(String::new()),
            c => terms.last_mut().expect("never empty").push(c),
        }
    }
    Ok(terms)
}

/// Byte index of the first `needle` not preceded by an escaping backslash. Compared as
/// bytes: an index inside a multi-byte character cannot slice the `str` (a panic found by
/// fuzzing), and an ASCII needle only ever matches at a character boundary.
fn find_unescaped(s: &str, needle: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i..].starts_with(needle.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                other => {
                    return err(format!(
                        "invalid escape sequence '\\{}' in field selector value {s:?}",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        } else if matches!(c, ',' | '=' | '!') {
            return err(format!("unescaped {c:?} in field selector value {s:?}"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_equality_and_existence() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(m(" app = web , tier "));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"), "!= matches objects without the key");
        assert!(!m("app!=web"));
        assert!(m("app"));
        assert!(!m("missing"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m("app=web,tier=front"));
        assert!(!m("app=web,tier=back"));
        assert!(m("example.com/owner!=x"));
        assert!(!m("app="), "an empty value is a value");
    }

    #[test]
    fn label_sets() {
        let l = labels(&[("env", "prod")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m("env in (prod, staging)"));
        assert!(!m("env in (dev)"));
        assert!(m("env notin (dev,qa),!gone"));
        assert!(!m("env notin (prod)"));
        assert!(m("other notin (prod)"));
        assert!(!m("other in (prod)"));
    }

    #[test]
    fn label_round_trip() {
        let s = LabelSelector::parse("a=b,c!=d,e,!f,g in (y,x)").unwrap();
        assert_eq!(s.to_string(), "a=b,c!=d,e,!f,g in (x,y)");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn bad_label_selectors() {
        for bad in [
            "a=b,",
            ",a",
            "a b",
            "-a=b",
            "a=b c",
            "a in ()",
            "a in (b",
            "a) in (b",
            "a foo (b)",
            "a>1",
            "!",
            &format!("{}=x", "k".repeat(64)),
            &format!("k={}", "v".repeat(64)),
            "Bad_Prefix/a=b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn field_selectors() {
        let m = |s: &str, name: &str, ns: Option<&str>| {
            FieldSelector::parse(s).unwrap().matches(name, ns)
        };
        assert!(m("", "x", None));
        assert!(m("metadata.name=foo", "foo", Some("ns")));
        assert!(m("metadata.name==foo", "foo", Some("ns")));
        assert!(!m("metadata.name=foo", "bar", Some("ns")));
        assert!(m("metadata.name!=foo", "bar", Some("ns")));
        assert!(m(
            "metadata.namespace=ns,metadata.name=foo",
            "foo",
            Some("ns")
        ));
        assert!(!m("metadata.namespace=other", "foo", Some("ns")));
        assert!(m("metadata.namespace=", "sha256:abc", None));
        assert!(m(r"metadata.name=a\,b", "a,b", None));
        assert_eq!(
            FieldSelector::parse("metadata.name=foo")
                .unwrap()
                .exact_name(),
            Some("foo")
        );
        assert_eq!(
            FieldSelector::parse("metadata.name!=foo")
                .unwrap()
                .exact_name(),
            None
        );
        let s = FieldSelector::parse(r"metadata.name!=a\=b").unwrap();
        assert_eq!(s.to_string(), r"metadata.name!=a\=b");
    }

    #[test]
    fn bad_field_selectors() {
        assert_eq!(
            FieldSelector::parse("spec.foo=x").unwrap_err().0,
            "field label not supported: spec.foo"
        );
        for bad in [
            "metadata.name",
            r"metadata.name=a\",
            r"metadata.name=a\x",
            "metadata.name=a=b",
        ] {
            assert!(FieldSelector::parse(bad).is_err(), "{bad:?}");
        }
    }
}
