//! `Range: bytes=...` on blob GETs: a single range, as RFC 9110 §14.1.2 writes it.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header (absent, another unit, or several ranges): send everything.
    Full,
    /// Serve these bytes (end exclusive) with 206.
    Partial(Range<u64>),
    /// Nothing of the blob matches: 416.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        // Multipart responses are rarely wanted from a registry; a full 200 is allowed.
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(n) if n > 0 && size > 0 => size.saturating_sub(n)..size,
            _ => return RangeRequest::Unsatisfiable,
        },
        // bytes=A-: from A to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => a..size,
            _ => return RangeRequest::Unsatisfiable,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b && a < size => a..(b.saturating_add(1)).min(size),
            _ => return RangeRequest::Unsatisfiable,
        },
        (true, true) => return RangeRequest::Unsatisfiable,
    };
    RangeRequest::Partial(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn conformance_cases() {
        let p = |h: &str| parse(Some(h), 2048);
        assert_eq!(p("bytes=500-1499"), Partial(500..1500));
        assert_eq!(p("bytes=500-"), Partial(500..2048));
        assert_eq!(p("bytes=-500"), Partial(1548..2048));
        assert_eq!(p("bytes=2000-5000"), Partial(2000..2048));
        assert_eq!(p("bytes=500-0"), Unsatisfiable);
        assert_eq!(p("bytes=5000-10000"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), Full);
        assert_eq!(p("items=0-1"), Full);
        assert_eq!(parse(None, 10), Full);
        assert_eq!(parse(Some("bytes=0-0"), 0), Unsatisfiable);
    }
}
