//! Property tests of the parsers and the range bookkeeping: no input makes them panic,
//! and what they accept means what it says.

use proptest::prelude::*;
use tthsd_engine::journal::Journal;
use tthsd_engine::range::{ContentRange, RangeSet, parse_content_range, range_header};
use tthsd_engine::retry::parse_retry_after;

proptest! {
    #[test]
    fn content_range_never_panics(s in ".{0,64}") {
        let _ = parse_content_range(&s);
    }

    #[test]
    fn content_range_round_trips(start in 0u64..u64::MAX / 4, len in 1u64..1u64 << 40, extra in 0u64..1u64 << 40) {
        let end = start + len;
        let total = end + extra;
        let text = format!("bytes {}-{}/{}", start, end - 1, total);
        prop_assert_eq!(
            parse_content_range(&text),
            Some(ContentRange::Bytes { start, end, total: Some(total) })
        );
        // The header we send for the same range names the same inclusive bounds.
        prop_assert_eq!(range_header(start, Some(end)), format!("bytes={}-{}", start, end - 1));
    }

    #[test]
    fn accepted_content_ranges_are_consistent(s in "bytes [0-9]{1,4}-[0-9]{1,4}/([0-9]{1,4}|\\*)") {
        if let Some(ContentRange::Bytes { start, end, total }) = parse_content_range(&s) {
            prop_assert!(start < end);
            if let Some(t) = total {
                prop_assert!(end <= t);
            }
        }
    }

    #[test]
    fn rangeset_matches_a_bitmap(ops in proptest::collection::vec((0u64..200, 0u64..40), 0..40)) {
        let mut set = RangeSet::new();
        let mut bits = [false; 240];
        for (s, l) in ops {
            set.insert(s, s + l);
            for b in bits.iter_mut().skip(s as usize).take(l as usize) {
                *b = true;
            }
        }
        prop_assert_eq!(set.covered(), bits.iter().filter(|b| **b).count() as u64);
        // Ranges are sorted, disjoint and not touching (merged).
        for w in set.ranges().windows(2) {
            prop_assert!(w[0].1 < w[1].0);
        }
        let missing: u64 = set.missing(240).iter().map(|(s, e)| e - s).sum();
        prop_assert_eq!(missing, bits.iter().filter(|b| !**b).count() as u64);
        prop_assert_eq!(set.is_complete(240), bits.iter().all(|b| *b));
    }

    #[test]
    fn journal_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Journal::decode(&bytes);
    }

    #[test]
    fn task_json_never_panics(s in ".{0,200}") {
        let _ = tthsd_engine::parse_tasks(&s, None);
        let _ = tthsd_engine::parse_headers_json(&s);
    }

    #[test]
    fn task_json_from_json_shaped_noise_never_panics(
        url in "(https?|ftp|file)://[a-z0-9.:]{0,12}/[ -~]{0,10}",
        path in "[ -~]{0,20}",
        key in "(url|URL|save_path|SavePath|show_name|id|headers|checksum)",
    ) {
        let json = format!(r#"[{{"url":{url:?},"save_path":{path:?},{key:?}:{path:?}}}]"#);
        let _ = tthsd_engine::parse_tasks(&json, Some(1));
    }

    #[test]
    fn retry_after_never_panics(s in ".{0,40}") {
        let _ = parse_retry_after(&s, std::time::SystemTime::now());
    }
}
