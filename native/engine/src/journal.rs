//! The journal: which ranges of the part file are durable, and what they belong to.
//!
//! Format (UTF-8, two lines): a JSON object, then the SHA-256 hex of that first line.
//! The digest makes a torn or edited journal detectable; the write goes to a temporary
//! file that is synced and renamed over the old journal, so a crash leaves either the old
//! journal or the new one, never a mix. The caller syncs the part file before writing a
//! journal, so every range a journal lists is on disk.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checksum::encode_hex;
use crate::range::RangeSet;

pub const FORMAT: &str = "tthsd-journal";
pub const VERSION: u32 = 1;

/// What a server said about a file, to recognise it again later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// A strong ETag, usable in `If-Range` (RFC 9110 §13.1.5 forbids weak ones there).
    pub fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.starts_with("W/"))
    }

    /// The value for `If-Range`: the strong ETag, else the Last-Modified date.
    pub fn if_range(&self) -> Option<&str> {
        self.strong_etag().or(self.last_modified.as_deref())
    }

    /// True when `other` describes the same version of the file. A side that lacks a
    /// validator cannot contradict the other on it.
    pub fn same_version(&self, other: &Validators) -> bool {
        // Compared weakly (RFC 9110 §8.8.3.2): any difference proves a change; equality
        // of weak tags proves nothing, which is why resuming across processes also
        // requires a validator usable in If-Range (see `if_range`).
        let bare = |t: &str| t.trim_start_matches("W/").to_owned();
        let etag_ok = match (&self.etag, &other.etag) {
            (Some(a), Some(b)) => bare(a) == bare(b),
            _ => true,
        };
        let lm_ok = match (&self.last_modified, &other.last_modified) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        etag_ok && lm_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub format: String,
    pub version: u32,
    pub url: String,
    pub final_url: String,
    pub total: u64,
    pub validators: Validators,
    pub ranges: Vec<(u64, u64)>,
}

impl Journal {
    pub fn new(
        url: &str,
        final_url: &str,
        total: u64,
        validators: Validators,
        done: &RangeSet,
    ) -> Self {
        Journal {
            format: FORMAT.into(),
            version: VERSION,
            url: url.into(),
            final_url: final_url.into(),
            total,
            validators,
            ranges: done.ranges().to_vec(),
        }
    }

    pub fn done(&self) -> RangeSet {
        RangeSet::from_ranges(self.ranges.iter().copied())
    }

    /// Serializes to the two-line form.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_string(self).unwrap_or_default();
        let digest = encode_hex(&Sha256::digest(body.as_bytes()));
        format!("{body}\n{digest}\n").into_bytes()
    }

    /// Parses and checks a journal; `None` for anything torn, edited, foreign or
    /// inconsistent.
    pub fn decode(bytes: &[u8]) -> Option<Journal> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let body = lines.next()?;
        let digest = lines.next()?;
        if encode_hex(&Sha256::digest(body.as_bytes())) != digest {
            return None;
        }
        let j: Journal = serde_json::from_str(body).ok()?;
        if j.format != FORMAT || j.version != VERSION {
            return None;
        }
        let mut last_end = 0;
        for (i, &(s, e)) in j.ranges.iter().enumerate() {
            if s >= e || e > j.total || (i > 0 && s <= last_end) {
                return None;
            }
            last_end = e;
        }
        Some(j)
    }

    /// Reads the journal at `path`, if there is a valid one (a link is never one).
    pub fn load(path: &Path) -> Option<Journal> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_file() || meta.len() > 64 * 1024 * 1024 {
            return None;
        }
        Journal::decode(&std::fs::read(path).ok()?)
    }

    /// Writes atomically: `tmp_path`, sync (when `sync`), rename over `path`.
    pub fn store(&self, path: &Path, tmp_path: &Path, sync: bool) -> std::io::Result<()> {
        let tmp = tmp_path.to_owned();
        {
            if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&tmp)?;
            }
            let mut f = crate::storage::no_follow(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
            )
            .open(&tmp)?;
            f.write_all(&self.encode())?;
            if sync {
                f.sync_data()?;
            }
        }
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        let done = RangeSet::from_ranges([(0, 10), (20, 30)]);
        Journal::new(
            "http://a/x",
            "http://b/x",
            100,
            Validators {
                etag: Some("\"e1\"".into()),
                last_modified: None,
            },
            &done,
        )
    }

    #[test]
    fn round_trips() {
        let j = sample();
        assert_eq!(Journal::decode(&j.encode()), Some(j.clone()));
        assert_eq!(j.done().covered(), 20);
    }

    #[test]
    fn rejects_torn_and_edited_journals() {
        let bytes = sample().encode();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 2] {
            assert_eq!(Journal::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut edited = bytes.clone();
        edited[30] ^= 1;
        assert_eq!(Journal::decode(&edited), None);
        let mut bad = sample();
        bad.ranges = vec![(0, 200)];
        assert_eq!(Journal::decode(&bad.encode()), None, "range past total");
        bad.ranges = vec![(10, 20), (5, 8)];
        assert_eq!(Journal::decode(&bad.encode()), None, "unsorted");
    }

    #[test]
    fn validators_compare_and_choose_if_range() {
        let strong = Validators {
            etag: Some("\"a\"".into()),
            last_modified: Some("d".into()),
        };
        assert_eq!(strong.if_range(), Some("\"a\""));
        let weak = Validators {
            etag: Some("W/\"a\"".into()),
            last_modified: Some("d".into()),
        };
        assert_eq!(weak.if_range(), Some("d"));
        assert!(strong.same_version(&Validators::default()));
        assert!(!strong.same_version(&Validators {
            etag: Some("\"b\"".into()),
            last_modified: None
        }));
    }
}
