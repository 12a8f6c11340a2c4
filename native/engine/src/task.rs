//! The task list: what to download and where (ABI.md §2), parsed and validated before
//! anything is created, so that bad input is rejected whole.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};
use url::Url;

use crate::checksum::Checksum;
use crate::error::{Error, Result};
use crate::scheme;

/// One file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub url: Url,
    pub save_path: PathBuf,
    pub show_name: String,
    pub id: String,
    /// Per-task headers; they override the downloader-wide ones of the same name.
    pub headers: Vec<(String, String)>,
    pub checksum: Option<Checksum>,
    /// Name the file from the server's `Content-Disposition` (in `save_path`'s folder;
    /// `save_path` itself when the server names none); the file then never replaces an
    /// existing one unless `overwrite`. Task keys `name_from_server`, `overwrite`.
    pub name_from_server: bool,
    /// With `name_from_server`: an existing file of that name may be replaced.
    pub overwrite: bool,
    /// At most this many requests to the task's host at once (`max_connections_per_host`);
    /// None: `thread_count`. The engine may go lower when the host pushes back.
    pub max_connections_per_host: Option<usize>,
    /// Other URLs of the same file (task key `mirrors`, at most [`MAX_MIRRORS`]): ranges
    /// are spread over them and the task's URL by speed (see the engine's `mirrors`).
    pub mirrors: Vec<Url>,
}

/// The most mirrors one task may name.
pub const MAX_MIRRORS: usize = 16;

/// Parses the task array. `expected` is the caller's `task_count`, when it gave one.
pub fn parse_tasks(json: &str, expected: Option<usize>) -> Result<Vec<TaskSpec>> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("tasks_json is not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(Error::invalid(
            "tasks_json must be a JSON array of task objects",
        ));
    };
    if let Some(n) = expected
        && n != items.len()
    {
        return Err(Error::invalid(format!(
            "task_count is {n} but tasks_json holds {} tasks",
            items.len()
        )));
    }
    if items.is_empty() {
        return Err(Error::invalid("tasks_json holds no task"));
    }
    let mut tasks = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    // Asked once, not per task: a list of 1,000 relative paths made 1,000 getcwd calls.
    let mut cwd: Option<PathBuf> = None;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(Error::invalid(format!("task {i} is not a JSON object")));
        };
        let task =
            parse_task(obj).map_err(|e| Error::invalid(format!("task {i}: {}", e.message)))?;
        if !seen.insert(normalize(&task.save_path, &mut cwd)) {
            return Err(Error::invalid(format!(
                "task {i}: save_path {:?} is used by an earlier task",
                task.save_path
            )));
        }
        tasks.push(task);
    }
    Ok(tasks)
}

fn parse_task(obj: &Map<String, Value>) -> Result<TaskSpec> {
    let url_text =
        string_key(obj, "url", "URL")?.ok_or_else(|| Error::invalid("missing \"url\""))?;
    let url = parse_url(&url_text)?;
    let save_path = string_key(obj, "save_path", "SavePath")?
        .ok_or_else(|| Error::invalid("missing \"save_path\""))?;
    if save_path.is_empty() {
        return Err(Error::invalid("save_path is empty"));
    }
    if save_path.contains('\0') {
        return Err(Error::invalid("save_path contains a NUL character"));
    }
    if names_a_folder(&save_path) {
        return Err(Error::invalid(format!(
            "save_path {save_path:?} does not name a file: it ends with a separator or \".\""
        )));
    }
    let save_path = PathBuf::from(save_path);
    if save_path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "save_path {save_path:?} does not name a file"
        )));
    }
    let show_name = match string_key(obj, "show_name", "ShowName")? {
        Some(s) if !s.is_empty() => s,
        _ => save_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let id = match string_key(obj, "id", "ID")? {
        Some(s) if !s.is_empty() => s,
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let headers = match obj.get("headers").or_else(|| obj.get("Headers")) {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_headers_value(v)?,
    };
    let checksum = match string_key(obj, "checksum", "Checksum")? {
        Some(s) if !s.is_empty() => Some(Checksum::parse(&s).map_err(Error::invalid)?),
        _ => None,
    };
    let max_connections_per_host = match obj.get("max_connections_per_host") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=4096).contains(&n) => Some(n as usize),
            _ => {
                return Err(Error::invalid(
                    "\"max_connections_per_host\" must be an integer from 1 to 4096",
                ));
            }
        },
    };
    let mirrors = parse_mirrors(obj.get("mirrors"), &url)?;
    Ok(TaskSpec {
        mirrors,
        url,
        save_path,
        show_name,
        id,
        headers,
        checksum,
        name_from_server: bool_key(obj, "name_from_server")?,
        overwrite: bool_key(obj, "overwrite")?,
        max_connections_per_host,
    })
}

/// The `mirrors` key: absent, null or a list of up to [`MAX_MIRRORS`] URLs, none of
/// them the task's own or another's repeat.
fn parse_mirrors(value: Option<&Value>, url: &Url) -> Result<Vec<Url>> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Error::invalid("\"mirrors\" must be a list of URLs")),
    };
    if items.len() > MAX_MIRRORS {
        return Err(Error::invalid(format!(
            "\"mirrors\" names {} URLs; at most {MAX_MIRRORS} are allowed",
            items.len()
        )));
    }
    let mut mirrors: Vec<Url> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(text) = item else {
            return Err(Error::invalid(format!("mirror {i} is not a string")));
        };
        let m =
            parse_url(text).map_err(|e| Error::invalid(format!("mirror {i}: {}", e.message)))?;
        if &m == url || mirrors.contains(&m) {
            return Err(Error::invalid(format!(
                "mirror {i} repeats the task's URL or an earlier mirror"
            )));
        }
        mirrors.push(m);
    }
    Ok(mirrors)
}

/// An optional boolean key: absent or null is false.
fn bool_key(obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::invalid(format!("\"{key}\" must be true or false"))),
    }
}

/// `out/` or `out/.`: the path's components name the folder `out` (so `file_name` says
/// "out"), but the part file, the path's text plus `.tthsd.part`, would be created inside
/// that folder, and publishing would then fail on the folder it made.
fn names_a_folder(text: &str) -> bool {
    let is_sep = |c: char| c == '/' || (cfg!(windows) && c == '\\');
    text.ends_with(is_sep) || text.rsplit(is_sep).next() == Some(".")
}

/// Reads a string under either spelling; a present non-string value is an error.
fn string_key(obj: &Map<String, Value>, snake: &str, go: &str) -> Result<Option<String>> {
    match obj
        .get(snake)
        .filter(|v| !v.is_null())
        .or_else(|| obj.get(go))
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(format!("\"{snake}\" must be a string"))),
    }
}

/// Parses and checks a download URL: a scheme of the registry (`scheme`) and a host. Refusals never quote
/// the URL: it may carry a password or a token.
pub fn parse_url(text: &str) -> Result<Url> {
    let url = Url::parse(text.trim())
        .map_err(|e| Error::invalid(format!("the URL does not parse: {e}")))?;
    if scheme::protocol(url.scheme()).is_none() {
        return Err(Error::invalid(format!(
            "the URL has scheme {:?}; only {} are supported",
            url.scheme(),
            scheme::names()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid("the URL has no host"));
    }
    Ok(url)
}

/// The URL as events show it: without its password (the user name and the query stay,
/// so a program can still tell its tasks apart).
pub fn display_url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.to_string()
}

/// Checks that a user agent can be sent as a header value (no CR, LF or other control
/// bytes): refused when the downloader is created, not by every request later.
pub fn check_user_agent(ua: &str) -> Result<()> {
    if ua.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        || reqwest::header::HeaderValue::from_str(ua).is_err()
    {
        return Err(Error::invalid(
            "user_agent is not a valid header value (control characters such as CR or LF)",
        ));
    }
    Ok(())
}

/// Parses a headers object (`{"Name": "value"}`), checking names and values are legal.
pub fn parse_headers_json(json: &str) -> Result<Vec<(String, String)>> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("headers_json is not valid JSON: {e}")))?;
    parse_headers_value(&value)
}

fn parse_headers_value(value: &Value) -> Result<Vec<(String, String)>> {
    let Value::Object(map) = value else {
        return Err(Error::invalid("headers must be a JSON object of strings"));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        let Value::String(v) = v else {
            return Err(Error::invalid(format!(
                "header {name:?} must have a string value"
            )));
        };
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Error::invalid(format!(
                "{name:?} is not a valid header name"
            )));
        }
        if reqwest::header::HeaderValue::from_str(v).is_err() {
            return Err(Error::invalid(format!(
                "header {name:?} has an invalid value"
            )));
        }
        out.push((name.clone(), v.clone()));
    }
    Ok(out)
}

/// A lexical absolute form of a path, so `a/b` and `./a/../a/b` count as the same file.
fn normalize(path: &Path, cwd: &mut Option<PathBuf>) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.get_or_insert_with(|| std::env::current_dir().unwrap_or_default())
            .join(path)
    };
    let mut out = PathBuf::new();
    for comp in absolute.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_save_paths_that_name_a_folder() {
        for path in ["out/", "a/b/", "a/.", ".", "/"] {
            let json = format!(r#"[{{"url":"http://a/x","save_path":"{path}"}}]"#);
            let err = parse_tasks(&json, None).unwrap_err();
            assert!(
                err.message.contains("does not name a file"),
                "{path}: {}",
                err.message
            );
        }
        for path in ["out", "a/b", "a/.b", "..x", "a/b.", "./x"] {
            let json = format!(r#"[{{"url":"http://a/x","save_path":"{path}"}}]"#);
            assert!(parse_tasks(&json, None).is_ok(), "{path}");
        }
    }

    #[test]
    fn accepts_both_spellings() {
        let t = parse_tasks(
            r#"[{"url":"http://a/x","save_path":"x","show_name":"X","id":"1"},
                {"URL":"https://b/y","SavePath":"d/y","ShowName":"Y","ID":"2"}]"#,
            Some(2),
        )
        .unwrap();
        assert_eq!(t[0].url.as_str(), "http://a/x");
        assert_eq!(t[0].show_name, "X");
        assert_eq!(t[1].save_path, PathBuf::from("d/y"));
        assert_eq!(t[1].id, "2");
    }

    #[test]
    fn fills_defaults() {
        let t = parse_tasks(r#"[{"url":"http://a/x","save_path":"dir/file.bin"}]"#, None).unwrap();
        assert_eq!(t[0].show_name, "file.bin");
        assert_eq!(t[0].id.len(), 36);
        assert!(t[0].headers.is_empty() && t[0].checksum.is_none());
    }

    #[test]
    fn reads_headers_and_checksum() {
        let t = parse_tasks(
            r#"[{"url":"http://a/x","save_path":"f","headers":{"X-A":"1"},"checksum":"md5:900150983cd24fb0d6963f7d28e17f72"}]"#,
            Some(1),
        )
        .unwrap();
        assert_eq!(t[0].headers, vec![("X-A".into(), "1".into())]);
        assert!(t[0].checksum.is_some());
    }

    #[test]
    fn rejects_every_invalid_case() {
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("", None, "not valid JSON"),
            ("{", None, "not valid JSON"),
            ("{}", None, "JSON array"),
            ("[]", None, "no task"),
            ("[1]", None, "not a JSON object"),
            (r#"[{"save_path":"f"}]"#, None, "missing \"url\""),
            (r#"[{"url":"http://a/x"}]"#, None, "missing \"save_path\""),
            (r#"[{"url":"http://a/x","save_path":""}]"#, None, "empty"),
            (
                r#"[{"url":"nota url","save_path":"f"}]"#,
                None,
                "does not parse",
            ),
            (r#"[{"url":"ftp://a/x","save_path":"f"}]"#, None, "scheme"),
            (
                r#"[{"url":"file:///etc/passwd","save_path":"f"}]"#,
                None,
                "scheme",
            ),
            (r#"[{"url":5,"save_path":"f"}]"#, None, "must be a string"),
            (
                r#"[{"url":"http://a/x","save_path":"f"}]"#,
                Some(2),
                "task_count",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"f"},{"url":"http://a/y","save_path":"./f"}]"#,
                None,
                "earlier task",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"f","headers":[1]}]"#,
                None,
                "JSON object",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"f","headers":{"a b":"1"}}]"#,
                None,
                "header name",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"f","headers":{"a":"\n"}}]"#,
                None,
                "invalid value",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"f","checksum":"crc:1"}]"#,
                None,
                "algorithm",
            ),
            (
                r#"[{"url":"http://a/x","save_path":"/"}]"#,
                None,
                "does not name a file",
            ),
        ];
        for (json, n, needle) in cases {
            let err = parse_tasks(json, *n).expect_err(json);
            assert!(err.message.contains(needle), "{json}: {}", err.message);
            assert!(!err.message.contains("secret") && !err.message.contains("tok"));
        }
    }

    #[test]
    fn parses_global_headers() {
        assert_eq!(
            parse_headers_json(r#"{"Authorization":"Bearer t"}"#).unwrap(),
            vec![("Authorization".into(), "Bearer t".into())]
        );
        assert!(parse_headers_json("[]").is_err());
        assert!(check_user_agent("TTHSD/1.0 (x; y)").is_ok());
        for bad in ["a\r\nX: 1", "a\nb", "a\u{1}", "a\u{7f}"] {
            assert!(check_user_agent(bad).is_err(), "{bad:?}");
        }
        assert!(parse_headers_json(r#"{"a":1}"#).is_err());
    }
}
