//! The order in which tags are shown and bulk-imported (library-go's PrioritizeTags):
//! `latest`, then minor versions (`5.1`, `v5.1`, `5.1-rc1`) newest first, then full semantic
//! versions newest first, then everything else in byte order. Sorting is stable.

use std::cmp::Ordering;

use semver::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    Latest,
    Minor,
    Full,
    Other,
}

fn priority(tag: &str) -> (Priority, Option<Version>) {
    if tag == "latest" {
        return (Priority::Latest, None);
    }
    let short = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = Version::parse(short) {
        return (Priority::Full, Some(v));
    }
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let minor = |s: &str| {
        s.split_once('.')
            .is_some_and(|(a, b)| numeric(a) && numeric(b))
    };
    // `5.1` (Go's `^\d+\.\d+$`), read as 5.1.0.
    if minor(short) {
        if let Ok(v) = Version::parse(&format!("{short}.0")) {
            return (Priority::Minor, Some(v));
        }
    }
    // `5.1-rc1` (`^(\d+\.\d+)-\w+$`), read as 5.1.0-rc1.
    if let Some((version, word)) = short.split_once('-') {
        let word_ok =
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if minor(version) && word_ok {
            if let Ok(v) = Version::parse(&format!("{version}.0-{word}")) {
                return (Priority::Minor, Some(v));
            }
        }
    }
    (Priority::Other, None)
}

/// Sorts tags by priority.
pub fn prioritize(tags: &mut [String]) {
    let mut keyed: Vec<(Priority, Option<Version>, bool, String)> = tags
        .iter()
        .map(|t| {
            let (p, v) = priority(t);
            (p, v, t.starts_with('v'), t.clone())
        })
        .collect();
    keyed.sort_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| match a.0 {
            Priority::Latest => Ordering::Equal,
            Priority::Other => a.3.cmp(&b.3),
            // Newer first; for the same version the unprefixed tag first. Build metadata
            // does not order versions.
            _ => {
                let (x, y) = (b.1.as_ref(), a.1.as_ref());
                x.zip(y)
                    .map_or(Ordering::Equal, |(x, y)| x.cmp_precedence(y))
                    .then(a.2.cmp(&b.2))
            }
        })
    });
    for (slot, (_, _, _, tag)) in tags.iter_mut().zip(keyed) {
        *slot = tag;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_minor_full_then_lexical() {
        let mut tags: Vec<String> = [
            "beta", "3.5", "3.6.1", "latest", "v3.10", "3.6", "3.6.10", "alpha", "3.6-rc1", "05.1",
            "5",
        ]
        .map(String::from)
        .to_vec();
        prioritize(&mut tags);
        assert_eq!(
            tags,
            [
                "latest", "v3.10", "3.6", "3.6-rc1", "3.5", "3.6.10", "3.6.1", "05.1", "5",
                "alpha", "beta"
            ]
        );
    }

    #[test]
    fn versions_order_as_library_go() {
        let mut tags: Vec<String> = [
            "other",
            "5.1.3",
            "v5.2",
            "latest",
            "5.2",
            "5.10",
            "1.0.0-rc1",
            "1.0.0",
            "5.1-rc1",
            "abc",
            "05.1",
            "v1.0.0",
        ]
        .map(String::from)
        .to_vec();
        prioritize(&mut tags);
        assert_eq!(
            tags,
            [
                "latest",
                "5.10",
                "5.2",
                "v5.2",
                "5.1-rc1",
                "5.1.3",
                "1.0.0",
                "v1.0.0",
                "1.0.0-rc1",
                "05.1",
                "abc",
                "other"
            ]
        );
    }
}
