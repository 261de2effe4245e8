//! Presentation: `oc get` tables (spec §7.3), kubectl-style YAML, relative ages.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Lays out rows as kubectl's tab writer does (minimum cell width 6, padding 3, the last
/// column unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths = vec![0usize; columns];
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned())
        .collect::<Vec<_>>();
    for row in &all {
        for (i, cell) in row.iter().enumerate().take(columns.saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(6));
        }
    }
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < columns {
                let pad = widths[i] - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// `NAME | IMAGE REPOSITORY | TAGS | UPDATED` for image streams.
pub fn stream_row(is: &Value, now: SystemTime) -> Vec<String> {
    let repo = [
        str_at(is, &["status", "publicDockerImageRepository"]),
        str_at(is, &["spec", "dockerImageRepository"]),
        str_at(is, &["status", "dockerImageRepository"]),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("");
    // (tag, newest item's created), newest first.
    let mut tags: Vec<(String, Option<SystemTime>)> = is["status"]["tags"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let created = t["items"][0]["created"].as_str().and_then(parse_time);
            (t["tag"].as_str().unwrap_or("").to_string(), created)
        })
        .collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let latest = tags.iter().filter_map(|t| t.1).max();
    let names: Vec<String> = tags.into_iter().map(|t| t.0).collect();
    vec![
        str_at(is, &["metadata", "name"]).to_string(),
        repo.to_string(),
        tags_up_to_width(&names, 40),
        latest.map(|t| ago(t, now)).unwrap_or_default(),
    ]
}

/// oc's printTagsUpToWidth: as many tags as fit in `width`, then `+ N more...`.
pub fn tags_up_to_width(tags: &[String], width: usize) -> String {
    let mut remaining = width as i64;
    let mut shown = tags.len();
    for (i, tag) in tags.iter().enumerate() {
        remaining -= tag.len() as i64 + 1;
        if remaining < 0 {
            shown = i.max(1);
            break;
        }
    }
    let mut out = tags[..shown].join(",");
    if remaining < 0 {
        out.push_str(&format!(" + {} more...", tags.len() - shown));
    }
    out
}

/// `NAME | IMAGE REFERENCE | UPDATED` (`wide` adds `IMAGE NAME`) for image stream tags.
pub fn istag_row(ist: &Value, now: SystemTime, wide: bool) -> Vec<String> {
    let created = str_at(ist, &["metadata", "creationTimestamp"]);
    let mut row = vec![
        str_at(ist, &["metadata", "name"]).to_string(),
        str_at(ist, &["image", "dockerImageReference"]).to_string(),
        parse_time(created).map(|t| ago(t, now)).unwrap_or_default(),
    ];
    if wide {
        row.push(str_at(ist, &["image", "metadata", "name"]).to_string());
    }
    row
}

/// `NAME | IMAGE REFERENCE` for images.
pub fn image_row(image: &Value) -> Vec<String> {
    vec![
        str_at(image, &["metadata", "name"]).to_string(),
        str_at(image, &["dockerImageReference"]).to_string(),
    ]
}

pub fn parse_time(s: &str) -> Option<SystemTime> {
    crate::imagestream::types::parse_rfc3339(s)
}

/// `<age> ago`, with the age as docker's units.HumanDuration, which oc's printer uses.
pub fn ago(t: SystemTime, now: SystemTime) -> String {
    format!(
        "{} ago",
        human_duration(now.duration_since(t).unwrap_or_default())
    )
}

pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// Block-style YAML as `kubectl -o yaml` prints it: two-space indents, sequence items at the
/// parent key's indent, strings quoted only when they would otherwise read as something else.
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&format!("{pad}{}:", quote(k)));
        match v {
            Value::Object(c) if !c.is_empty() => {
                out.push('\n');
                yaml_map(c, indent + 2, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_seq(a, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn yaml_seq(a: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for v in a {
        let mut item = String::new();
        match v {
            Value::Object(c) if !c.is_empty() => yaml_map(c, indent + 2, &mut item),
            Value::Array(c) if !c.is_empty() => yaml_seq(c, indent + 2, &mut item),
            other => {
                out.push_str(&format!("{pad}- {}\n", scalar(other)));
                continue;
            }
        }
        // The first line of the nested block starts at indent + 2: put the dash there.
        out.push_str(&pad);
        out.push_str("- ");
        out.push_str(&item[indent + 2..]);
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn quote(s: &str) -> String {
    if needs_quotes(s) {
        serde_json::to_string(s).expect("strings serialize")
    } else {
        s.to_string()
    }
}

/// Dates (`2024-01-01…`) and sexagesimal numbers (`1:20`), which YAML 1.1 may resolve.
fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
        || (s.contains(':') && s.chars().all(|c| c.is_ascii_digit() || ":._".contains(c)))
}

fn needs_quotes(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", "-.inf", ".nan",
    ];
    let Some(first) = s.chars().next() else {
        return true;
    };
    RESERVED.contains(&s.to_ascii_lowercase().as_str())
        || s.parse::<f64>().is_ok()
        // Timestamps and other digit-led forms YAML 1.1 may resolve (dates, sexagesimals).
        || looks_like_time(s)
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_layout() {
        let t = table(
            &["NAME", "IMAGE REFERENCE", "UPDATED"],
            &[vec![
                "app:v1".into(),
                "h/ns/app@sha256:ab".into(),
                "".into(),
            ]],
        );
        assert_eq!(
            t,
            "NAME     IMAGE REFERENCE      UPDATED\napp:v1   h/ns/app@sha256:ab\n"
        );
    }

    #[test]
    fn human_durations() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(s(0)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn stream_rows_sort_tags_newest_first() {
        let now = parse_time("2024-01-01T00:10:00Z").unwrap();
        let is = json!({
            "metadata": {"name": "app"},
            "status": {"dockerImageRepository": "h/ns/app", "tags": [
                {"tag": "a", "items": [{"created": "2024-01-01T00:00:00Z"}]},
                {"tag": "b", "items": [{"created": "2024-01-01T00:05:00Z"}]},
                {"tag": "c", "items": []}
            ]}
        });
        assert_eq!(
            stream_row(&is, now),
            vec!["app", "h/ns/app", "b,a,c", "5 minutes ago"]
        );
        let empty = json!({"metadata": {"name": "e"}, "spec": {"dockerImageRepository": "x/y"},
            "status": {"dockerImageRepository": "h/ns/e"}});
        assert_eq!(stream_row(&empty, now), vec!["e", "x/y", "", ""]);
    }

    #[test]
    fn tags_truncate() {
        let tags: Vec<String> = (0..10).map(|i| format!("tag-number-{i}")).collect();
        assert_eq!(
            tags_up_to_width(&tags, 40),
            "tag-number-0,tag-number-1,tag-number-2 + 7 more..."
        );
        let long = vec!["x".repeat(50), "y".into()];
        assert_eq!(
            tags_up_to_width(&long, 40),
            format!("{} + 1 more...", "x".repeat(50))
        );
        assert_eq!(tags_up_to_width(&[], 40), "");
    }

    #[test]
    fn yaml_output() {
        let v = json!({
            "kind": "ImageStreamTag",
            "metadata": {"name": "app:v1", "creationTimestamp": "2024-01-01T00:00:00Z",
                "annotations": {"a": "true"}},
            "tag": null,
            "image": {"dockerImageLayers": [{"name": "sha256:1", "size": 3}], "empty": [],
                "nested": [[1, 2], "x"]},
            "s": ["", "a: b", "-x", "1.5", "plain text", "90580f4c-7620", "1:20"]
        });
        let expected = "\
image:
  dockerImageLayers:
  - name: sha256:1
    size: 3
  empty: []
  nested:
  - - 1
    - 2
  - x
kind: ImageStreamTag
metadata:
  annotations:
    a: \"true\"
  creationTimestamp: \"2024-01-01T00:00:00Z\"
  name: app:v1
s:
- \"\"
- \"a: b\"
- \"-x\"
- \"1.5\"
- plain text
- 90580f4c-7620
- \"1:20\"
tag: null
";
        assert_eq!(yaml(&v), expected);
    }
}
