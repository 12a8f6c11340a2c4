//! Server-chosen file names (opt-in, task key `name_from_server`): the name a
//! `Content-Disposition` header gives, reduced to a safe base name.
//!
//! The header is the server's to write, so it is hostile input: `filename="../x"`,
//! `/etc/passwd`, `..\x`, control characters, a leading dot, an empty name. What comes
//! out is one plain file name or nothing: the last component only (after `/` and `\`),
//! no control characters, no leading dots (no hidden files, no `.`/`..`), no trailing
//! dots or spaces (Windows drops them), at most [`MAX_NAME_BYTES`] bytes. Where the file
//! goes (the `save_path`'s folder) and whether an existing file may be replaced are the
//! caller's; this module only names.
//!
//! `filename*` (RFC 5987/8187 `UTF-8''percent-encoded`) is preferred over `filename`
//! (RFC 6266 §4.3).

use std::path::PathBuf;

use crate::error::{Error, ErrorCode, Result};
use crate::request::FileCtx;

/// For a task with `name_from_server`: where its file will be published, from the
/// `Content-Disposition` of the attempt's first response (`header`), else `save_path`.
/// Fails (`io`, before any byte is written) when a file is there already and the task
/// did not ask for `overwrite`; the publish itself refuses to replace one too, for a
/// file that appears meanwhile.
pub(crate) fn choose(ctx: &FileCtx<'_>, header: Option<&str>) -> Result<()> {
    let task = ctx.task;
    if !task.spec.name_from_server {
        return Ok(());
    }
    let save = &task.spec.save_path;
    let target: PathBuf = match header.and_then(file_name) {
        Some(name) => save.with_file_name(name),
        None => save.clone(),
    };
    if !task.spec.overwrite && std::fs::symlink_metadata(&target).is_ok() {
        return Err(Error::new(
            ErrorCode::Io,
            format!(
                "{} exists already; not replacing it (ask for overwrite to replace it)",
                target.display()
            ),
        ));
    }
    let mut chosen = crate::state::lock(&task.publish_as);
    if chosen.as_ref() != Some(&target) {
        ctx.shared.task_msg(
            task,
            format!("Saving as {} (named by the server)", target.display()),
        );
        *chosen = Some(target);
    }
    Ok(())
}

/// The longest name we give a file: under every common file system's limit (255 bytes)
/// with room for the part file's `.tthsd.journal.tmp` suffix.
pub(crate) const MAX_NAME_BYTES: usize = 200;

/// The safe base name a `Content-Disposition` value gives, if any.
pub(crate) fn file_name(header: &str) -> Option<String> {
    let params = parameters(header);
    let extended = params
        .iter()
        .find(|(k, _)| k == "filename*")
        .and_then(|(_, v)| decode_ext_value(v));
    let plain = params
        .iter()
        .find(|(k, _)| k == "filename")
        .map(|(_, v)| v.clone());
    extended
        .as_deref()
        .and_then(sanitize)
        .or_else(|| plain.as_deref().and_then(sanitize))
}

/// `name=value` pairs after the disposition type, names lower-cased, quoted strings
/// unquoted (backslash escapes taken literally, as RFC 9110 §5.6.4 says).
fn parameters(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match header.split_once(';') {
        Some((_, r)) => r,
        None => return out,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some((name, after)) = rest.split_once('=') else {
            return out;
        };
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            v.push(e);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            (v, &q[end.min(q.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((name, value));
        rest = next;
    }
}

/// `charset'language'percent-encoded` (RFC 8187); UTF-8 and ISO-8859-1 only.
fn decode_ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?.to_ascii_lowercase();
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes = percent_decode(encoded)?;
    match charset.as_str() {
        "utf-8" => String::from_utf8(bytes).ok(),
        "iso-8859-1" => Some(bytes.iter().map(|&b| b as char).collect()),
        _ => None,
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// One safe base name from a name a server proposed, or None when nothing usable is
/// left.
pub(crate) fn sanitize(proposed: &str) -> Option<String> {
    // The last component, whichever separator the server had in mind.
    let base = proposed.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| {
            // Control characters would garble terminals and logs; ':' and the other
            // characters Windows forbids are replaced so the name is one everywhere.
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        name.push(c);
    }
    if name.is_empty() || name.chars().all(|c| c == '_') {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_extended_names() {
        assert_eq!(
            file_name("attachment; filename=\"report.pdf\"").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            file_name("attachment; filename=plain.txt").as_deref(),
            Some("plain.txt")
        );
        assert_eq!(
            file_name(
                "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt"
            )
            .as_deref(),
            Some("€ rates.txt")
        );
        assert_eq!(file_name("inline").as_deref(), None);
        assert_eq!(file_name("attachment; filename=\"\"").as_deref(), None);
    }

    #[test]
    fn hostile_names_become_a_safe_base_name_or_nothing() {
        for (header, want) in [
            ("attachment; filename=\"../x\"", Some("x")),
            ("attachment; filename=\"../../etc/passwd\"", Some("passwd")),
            ("attachment; filename=\"/etc/passwd\"", Some("passwd")),
            ("attachment; filename=\"..\\\\x\"", Some("x")),
            (
                "attachment; filename=\"C:\\\\Windows\\\\evil.dll\"",
                Some("evil.dll"),
            ),
            (
                "attachment; filename*=UTF-8''..%2F..%2Fescape",
                Some("escape"),
            ),
            ("attachment; filename=\"a\u{1}b\nc\"", Some("a_b_c")),
            ("attachment; filename=\".bashrc\"", Some("bashrc")),
            ("attachment; filename=\"..\"", None),
            ("attachment; filename=\".\"", None),
            ("attachment; filename=\"/\"", None),
            ("attachment; filename=\"dir/\"", None),
            ("attachment; filename=\"\u{7}\"", None),
        ] {
            assert_eq!(file_name(header).as_deref(), want, "{header:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(300);
        let name = sanitize(&long).unwrap_or_default();
        assert!(name.len() <= MAX_NAME_BYTES && name.chars().all(|c| c == 'é'));
    }
}
