//! Byte ranges: half-open `[start, end)` inside the engine, inclusive `bytes=a-b` only at
//! the HTTP edge (this module does both conversions, nothing else does).

/// A parsed `Content-Range` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes a-b/N` or `bytes a-b/*`: the body holds `[start, end)`.
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */N`: the range asked cannot be satisfied; the resource has N bytes.
    Unsatisfied { total: u64 },
}

/// Parses `Content-Range` (RFC 9110 §14.4). Anything malformed is `None`.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?;
    // The unit must be followed by at least one space.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let rest = rest.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim();
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied {
            total: parse_digits(total)?,
        });
    }
    let (a, b) = range.trim().split_once('-')?;
    let start = parse_digits(a)?;
    let last = parse_digits(b)?;
    if last < start {
        return None;
    }
    let end = last.checked_add(1)?;
    let total = if total == "*" {
        None
    } else {
        let t = parse_digits(total)?;
        if end > t {
            return None;
        }
        Some(t)
    };
    Some(ContentRange::Bytes { start, end, total })
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The `Range` request header for the half-open `[start, end)`; `end == None` means
/// "to the end of the file".
pub fn range_header(start: u64, end: Option<u64>) -> String {
    match end {
        Some(end) if end > start => format!("bytes={}-{}", start, end - 1),
        _ => format!("bytes={start}-"),
    }
}

/// A set of disjoint, sorted, half-open byte ranges: what is on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Builds a set from possibly overlapping, unsorted ranges (empty ones dropped).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut set = RangeSet::new();
        for (s, e) in ranges {
            set.insert(s, e);
        }
        set
    }

    /// Adds `[start, end)`, merging with neighbours it touches or overlaps.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // First range whose end reaches `start` (touching counts, so adjacent merge).
        let i = self.ranges.partition_point(|&(_, re)| re < s);
        let mut j = i;
        while j < self.ranges.len() && self.ranges[j].0 <= e {
            s = s.min(self.ranges[j].0);
            e = e.max(self.ranges[j].1);
            j += 1;
        }
        self.ranges.splice(i..j, std::iter::once((s, e)));
    }

    /// Total bytes covered.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| e - s).sum()
    }

    /// True when `[0, total)` is entirely covered.
    pub fn is_complete(&self, total: u64) -> bool {
        total == 0
            || self
                .ranges
                .first()
                .is_some_and(|&(s, e)| s == 0 && e >= total)
    }

    /// Length of the covered prefix starting at 0.
    pub fn prefix(&self) -> u64 {
        match self.ranges.first() {
            Some(&(0, e)) => e,
            _ => 0,
        }
    }

    /// The gaps of `[0, total)`, in order.
    pub fn missing(&self, total: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cursor = 0;
        for &(s, e) in &self.ranges {
            if s >= total {
                break;
            }
            if s > cursor {
                out.push((cursor, s));
            }
            cursor = cursor.max(e);
        }
        if cursor < total {
            out.push((cursor, total));
        }
        out
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_satisfied_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-0/10"),
            Some(ContentRange::Bytes {
                start: 0,
                end: 1,
                total: Some(10)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange::Bytes {
                start: 5,
                end: 10,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("  bytes   4294967296-4294967299/8589934592 "),
            Some(ContentRange::Bytes {
                start: 4_294_967_296,
                end: 4_294_967_300,
                total: Some(8_589_934_592)
            })
        );
    }

    #[test]
    fn parses_unsatisfied() {
        assert_eq!(
            parse_content_range("bytes */0"),
            Some(ContentRange::Unsatisfied { total: 0 })
        );
    }

    #[test]
    fn rejects_malformed_content_range() {
        for bad in [
            "",
            "bytes",
            "bytes0-1/2",
            "items 0-1/2",
            "bytes 1-0/5",
            "bytes 0-9/5",
            "bytes -1-2/5",
            "bytes 0-1/",
            "bytes 0-/5",
            "bytes a-b/c",
            "bytes 0-18446744073709551615/*",
            "bytes */*",
            "bytes +1-2/5",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_header_is_inclusive_at_the_edge() {
        assert_eq!(range_header(0, Some(1)), "bytes=0-0");
        assert_eq!(range_header(10, Some(20)), "bytes=10-19");
        assert_eq!(range_header(10, None), "bytes=10-");
    }

    #[test]
    fn rangeset_merges_and_reports_gaps() {
        let mut s = RangeSet::new();
        s.insert(10, 20);
        s.insert(30, 40);
        s.insert(20, 30);
        assert_eq!(s.ranges(), &[(10, 40)]);
        s.insert(0, 5);
        assert_eq!(s.missing(50), vec![(5, 10), (40, 50)]);
        assert_eq!(s.covered(), 35);
        assert_eq!(s.prefix(), 5);
        s.insert(3, 12);
        assert_eq!(s.ranges(), &[(0, 40)]);
        assert!(!s.is_complete(50));
        s.insert(40, 50);
        assert!(s.is_complete(50));
        assert!(s.missing(50).is_empty());
    }

    #[test]
    fn rangeset_ignores_empty_ranges() {
        let s = RangeSet::from_ranges([(5, 5), (7, 3)]);
        assert_eq!(s.covered(), 0);
        assert!(RangeSet::new().is_complete(0));
    }
}
