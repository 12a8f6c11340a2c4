//! Expected file digests (`"sha256:<hex>"`, `"md5:<hex>"`) and incremental hashing.

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

/// A digest the finished file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

impl Checksum {
    /// Parses `sha256:<64 hex>` or `md5:<32 hex>` (algorithm name case-insensitive).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (alg, hex) = text
            .split_once(':')
            .ok_or_else(|| format!("checksum {text:?} is not of the form \"sha256:<hex>\""))?;
        let (algorithm, len) = match alg.trim().to_ascii_lowercase().as_str() {
            "sha256" => (Algorithm::Sha256, 32),
            "md5" => (Algorithm::Md5, 16),
            other => return Err(format!("checksum algorithm {other:?} is not sha256 or md5")),
        };
        let digest = decode_hex(hex.trim())
            .ok_or_else(|| format!("checksum {text:?} has invalid hex digits"))?;
        if digest.len() != len {
            return Err(format!(
                "checksum {text:?} must have {} hex digits",
                len * 2
            ));
        }
        Ok(Checksum { algorithm, digest })
    }

    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
        }
    }

    pub fn to_text(&self) -> String {
        let name = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Md5 => "md5",
        };
        format!("{name}:{}", encode_hex(&self.digest))
    }
}

/// A running digest of either algorithm.
pub enum Hasher {
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hashes() {
        let c = Checksum::parse(
            "SHA256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
        let mut h = c.hasher();
        h.update(b"abc");
        assert_eq!(h.finish(), c.digest);
        let m = Checksum::parse("md5:900150983cd24fb0d6963f7d28e17f72").unwrap();
        let mut h = m.hasher();
        h.update(b"abc");
        assert_eq!(h.finish(), m.digest);
        assert_eq!(m.to_text(), "md5:900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn rejects_bad_checksums() {
        for bad in ["", "sha256", "sha1:00", "md5:xyz", "md5:00", "sha256:0g"] {
            assert!(Checksum::parse(bad).is_err(), "{bad}");
        }
    }
}
