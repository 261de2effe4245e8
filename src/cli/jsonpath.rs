//! The subset of kubectl's JSONPath templates that `-o jsonpath=...` accepts.
//!
//! Supported: literal text (with `\n`, `\t`, `\\` escapes), `{'…'}` / `{"…"}` string literals,
//! paths rooted at the current object (`.a.b`, `@.a`) or the root (`$.a`), child fields
//! (`.name`, `['name']`), indexes (`[0]`, `[-1]`), slices (`[1:3]`), wildcards (`[*]`, `.*`),
//! simple filters (`[?(@.k=="v")]`, `!=`, `[?(@.k)]`), and `{range EXPR}…{end}` (nestable).
//! As in `kubectl get` (which allows missing keys), a path that matches nothing prints
//! nothing; several matches of one expression are separated by a space.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
struct Path {
    from_root: bool,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Exists(Path),
    Compare(Path, bool, Value),
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, String> {
        let mut stack: Vec<(Option<Path>, Vec<Node>)> = vec![(None, Vec::new())];
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                push_text(&mut stack, unescape(rest));
                break;
            };
            if open > 0 {
                push_text(&mut stack, unescape(&rest[..open]));
            }
            let close = action_end(&rest[open..])
                .ok_or_else(|| format!("unclosed action in {template:?}"))?;
            let action = rest[open + 1..open + close].trim();
            rest = &rest[open + close + 1..];
            if action == "end" {
                if stack.len() == 1 {
                    return Err("not in range, nothing to end".into());
                }
                let (path, nodes) = stack.pop().expect("checked");
                let parent = &mut stack.last_mut().expect("root frame").1;
                parent.push(Node::Range(path.expect("range frame"), nodes));
            } else if let Some(expr) = action.strip_prefix("range ") {
                stack.push((Some(parse_path(expr.trim())?), Vec::new()));
            } else if action.starts_with('\'') || action.starts_with('"') {
                push_text(&mut stack, parse_literal(action)?);
            } else {
                let path = parse_path(action)?;
                stack
                    .last_mut()
                    .expect("root frame")
                    .1
                    .push(Node::Path(path));
            }
        }
        if stack.len() != 1 {
            return Err("unclosed range, missing {end}".into());
        }
        Ok(Template {
            nodes: stack.pop().expect("root frame").1,
        })
    }

    /// Renders the template against `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        out
    }

    /// Every value the template's paths match in `root`, as text (a custom column's cells).
    pub fn values(&self, root: &Value) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| match n {
                Node::Path(p) => eval(p, root, root).into_iter().map(text).collect(),
                Node::Text(t) => vec![t.clone()],
                Node::Range(..) => vec![self.render(root)],
            })
            .collect()
    }
}

fn push_text(stack: &mut [(Option<Path>, Vec<Node>)], text: String) {
    let nodes = &mut stack.last_mut().expect("root frame").1;
    if let Some(Node::Text(prev)) = nodes.last_mut() {
        prev.push_str(&text);
    } else {
        nodes.push(Node::Text(text));
    }
}

/// Offset of the `}` closing the action that starts at `s[0] == '{'`, skipping quoted strings.
fn action_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '}' => return Some(i),
                _ => {}
            },
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse_literal(s: &str) -> Result<String, String> {
    let q = s.chars().next().unwrap_or('\'');
    match s[1..].strip_suffix(q) {
        Some(inner) if s.len() >= 2 => Ok(unescape(inner)),
        _ => Err(format!("unterminated string literal {s}")),
    }
}

fn parse_path(s: &str) -> Result<Path, String> {
    let (from_root, mut rest) = match s.chars().next() {
        Some('$') => (true, &s[1..]),
        Some('@') => (false, &s[1..]),
        Some('.') | Some('[') => (false, s),
        _ => return Err(format!("unrecognized identifier {s}")),
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            if after.starts_with('.') {
                return Err("recursive descent (..) is not supported".into());
            }
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            match name {
                "" => {}
                "*" => steps.push(Step::Wildcard),
                _ => steps.push(Step::Field(name.to_string())),
            }
            rest = &after[end..];
        } else if rest.starts_with('[') {
            let end = bracket_end(rest).ok_or_else(|| format!("unclosed [ in {s}"))?;
            steps.push(parse_bracket(rest[1..end].trim())?);
            rest = &rest[end + 1..];
        } else {
            return Err(format!("unexpected {rest:?} in {s}"));
        }
    }
    Ok(Path { from_root, steps })
}

/// Offset of the `]` matching `s[0] == '['`, honouring quotes and nested brackets.
fn bracket_end(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        return Ok(Step::Field(parse_literal(inner)?));
    }
    if let Some(f) = inner.strip_prefix('?') {
        let f = f.trim();
        let body = f
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or_else(|| format!("invalid filter {inner}"))?;
        return parse_filter(body.trim()).map(Step::Filter);
    }
    let int = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("invalid array index {s}"))
        }
    };
    match inner.split_once(':') {
        Some((a, b)) => Ok(Step::Slice(int(a)?, int(b)?)),
        None => int(inner)?
            .map(Step::Index)
            .ok_or_else(|| "empty array index".to_string()),
    }
}

fn parse_filter(body: &str) -> Result<Filter, String> {
    for (op, eq) in [("==", true), ("!=", false)] {
        if let Some((lhs, rhs)) = body.split_once(op) {
            let rhs = rhs.trim();
            let value = if rhs.starts_with('\'') || rhs.starts_with('"') {
                Value::String(parse_literal(rhs)?)
            } else {
                serde_json::from_str(rhs).map_err(|_| format!("invalid filter operand {rhs}"))?
            };
            return Ok(Filter::Compare(parse_path(lhs.trim())?, eq, value));
        }
    }
    Ok(Filter::Exists(parse_path(body)?))
}

fn render_nodes(nodes: &[Node], root: &Value, cur: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let texts: Vec<String> = eval(p, root, cur).into_iter().map(text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(p, body) => {
                for item in eval(p, root, cur) {
                    render_nodes(body, root, item, out);
                }
            }
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn eval<'a>(path: &Path, root: &'a Value, cur: &'a Value) -> Vec<&'a Value> {
    let mut values = vec![if path.from_root { root } else { cur }];
    for step in &path.steps {
        let mut next = Vec::new();
        for v in values {
            match (step, v) {
                (Step::Field(name), Value::Object(m)) => next.extend(m.get(name)),
                (Step::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                (Step::Wildcard, Value::Object(m)) => next.extend(m.values()),
                (Step::Index(i), Value::Array(a)) => {
                    let i = if *i < 0 { a.len() as i64 + i } else { *i };
                    if i >= 0 {
                        next.extend(a.get(i as usize));
                    }
                }
                (Step::Slice(from, to), Value::Array(a)) => {
                    let len = a.len() as i64;
                    let clamp = |x: i64| (if x < 0 { len + x } else { x }).clamp(0, len) as usize;
                    let (f, t) = (clamp(from.unwrap_or(0)), clamp(to.unwrap_or(len)));
                    if f < t {
                        next.extend(a[f..t].iter());
                    }
                }
                (Step::Filter(filter), Value::Array(a)) => {
                    next.extend(a.iter().filter(|item| matches(filter, root, item)));
                }
                _ => {}
            }
        }
        values = next;
    }
    values
}

fn matches(filter: &Filter, root: &Value, item: &Value) -> bool {
    match filter {
        Filter::Exists(p) => !eval(p, root, item).is_empty(),
        Filter::Compare(p, eq, want) => {
            let found = eval(p, root, item).contains(&want);
            found == *eq
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v)
    }

    #[test]
    fn fields_indexes_and_wildcards() {
        let v = json!({"a": {"b": "x", "n": 3, "t": true}, "l": [{"b": 1}, {"b": 2}, {"c": 3}]});
        assert_eq!(render("{.a.b}", &v), "x");
        assert_eq!(render("{$.a.n}", &v), "3");
        assert_eq!(render("{.a.t}", &v), "true");
        assert_eq!(render("{.l[0].b}", &v), "1");
        assert_eq!(render("{.l[-1].c}", &v), "3");
        assert_eq!(render("{.l[*].b}", &v), "1 2");
        assert_eq!(render("{.l[0:2].b}", &v), "1 2");
        assert_eq!(render("{.a['b']}", &v), "x");
        assert_eq!(render("{.l[0]}", &v), r#"{"b":1}"#);
        assert_eq!(render("{.missing.x}{.l[9].b}", &v), "");
        assert_eq!(render("name={.a.b} n={.a.n}", &v), "name=x n=3");
        assert_eq!(render("{@.a.b}", &v), "x");
    }

    #[test]
    fn literals_and_escapes() {
        let v = json!({"a": "x"});
        assert_eq!(render("{.a}{'\\n'}", &v), "x\n");
        assert_eq!(render("{.a}{\"\\t\"}|", &v), "x\t|");
        assert_eq!(render("{.a}\\n", &v), "x\n");
        assert_eq!(render("{'}'}", &v), "}");
    }

    #[test]
    fn range_over_manifests() {
        let v = json!({"image": {"dockerImageManifests": [
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64"}
        ]}});
        let t = "{range .image.dockerImageManifests[*]}{.os}/{.architecture}{'\\n'}{end}";
        assert_eq!(render(t, &v), "linux/amd64\nlinux/arm64\n");
        // Single-arch images have no manifests: empty output.
        assert_eq!(render(t, &json!({"image": {}})), "");
    }

    #[test]
    fn nested_range_and_root() {
        let v = json!({"ns": "p", "items": [
            {"name": "a", "tags": [{"tag": "1"}, {"tag": "2"}]},
            {"name": "b", "tags": []}
        ]});
        let t = "{range .items[*]}{$.ns}/{.name}:{range .tags[*]}[{.tag}]{end};{end}";
        assert_eq!(render(t, &v), "p/a:[1][2];p/b:;");
    }

    #[test]
    fn filters() {
        let v = json!({"tags": [
            {"tag": "latest", "items": [{"image": "sha256:1"}]},
            {"tag": "v1", "items": [{"image": "sha256:2"}], "conditions": [{}]}
        ]});
        assert_eq!(
            render("{.tags[?(@.tag==\"v1\")].items[0].image}", &v),
            "sha256:2"
        );
        assert_eq!(render("{.tags[?(@.tag!='v1')].tag}", &v), "latest");
        assert_eq!(render("{.tags[?(@.conditions)].tag}", &v), "v1");
    }

    #[test]
    fn parse_errors() {
        assert!(Template::parse("{.a").is_err());
        assert!(Template::parse("{range .a[*]}x").is_err());
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{a.b}").is_err());
        assert!(Template::parse("{.a[x]}").is_err());
        assert!(Template::parse("{..a}").is_err());
    }
}
