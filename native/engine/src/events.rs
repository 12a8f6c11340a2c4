//! The events a run reports (ABI.md §4) and their JSON form.
//!
//! The engine only emits typed [`Event`]s into an [`EventSink`]; who delivers them (a C
//! callback thread, a remote listener) is the embedder's business.

use serde_json::{Value, json};

/// Where a downloader sends its events. `emit` must not block: it is called from the
/// engine's network tasks.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);

    /// Blocks (boundedly) until what was emitted so far has been handed on. Called by
    /// embedders before they stop delivering events; never from the engine's tasks.
    fn flush(&self) {}
}

/// A sink that drops everything (a downloader created without a callback).
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// Task fields repeated by `startOne` and `endOne`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub url: String,
    pub save_path: String,
    pub show_name: String,
    /// 1-based position in the task list.
    pub index: usize,
    pub total: usize,
    /// Where the file was published when the server named it (`name_from_server`);
    /// sent as `SavedAs` in `endOne`.
    pub saved_as: Option<String>,
    /// What each of the task's URLs served, when it has mirrors (its own URL first);
    /// sent as `Sources` in `endOne`.
    pub sources: Vec<SourceShare>,
}

/// What one of a task's URLs served since its file last started from zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceShare {
    /// As events show it: no credentials, no query.
    pub url: String,
    pub bytes: u64,
    /// Why it was dropped, when it was.
    pub dropped: Option<String>,
}

impl SourceShare {
    /// As `endOne`'s `Sources` and the statistics list it.
    pub fn value(&self) -> Value {
        json!({"URL": self.url, "Bytes": self.bytes, "Dropped": self.dropped})
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Start,
    StartOne(TaskInfo),
    Update {
        downloaded: u64,
        total: u64,
        speed: f64,
        /// Bytes from offset 0 all on disk (our addition: in-order consumers read them).
        contiguous: u64,
    },
    Msg {
        text: String,
    },
    Err {
        error: String,
        code: &'static str,
    },
    EndOne {
        info: TaskInfo,
        success: bool,
    },
    End,
}

/// One event: what happened, and to which task (`show_name` "Global", `id` "" for the
/// downloader as a whole).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub show_name: String,
    pub id: String,
}

pub const GLOBAL_SHOW_NAME: &str = "Global";

impl Event {
    pub fn global(kind: EventKind) -> Self {
        Event {
            kind,
            show_name: GLOBAL_SHOW_NAME.to_owned(),
            id: String::new(),
        }
    }

    pub fn task(kind: EventKind, show_name: &str, id: &str) -> Self {
        Event {
            kind,
            show_name: show_name.to_owned(),
            id: id.to_owned(),
        }
    }

    /// The `Type` field.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            EventKind::Start => "start",
            EventKind::StartOne(_) => "startOne",
            EventKind::Update { .. } => "update",
            EventKind::Msg { .. } => "msg",
            EventKind::Err { .. } => "err",
            EventKind::EndOne { .. } => "endOne",
            EventKind::End => "end",
        }
    }

    /// The `Name` field: a human label for the type.
    pub fn display_name(&self) -> &'static str {
        match self.kind {
            EventKind::Start => "Start",
            EventKind::StartOne(_) => "Start one",
            EventKind::Update { .. } => "Update",
            EventKind::Msg { .. } => "Message",
            EventKind::Err { .. } => "Error",
            EventKind::EndOne { .. } => "End one",
            EventKind::End => "End",
        }
    }

    pub fn is_update(&self) -> bool {
        matches!(self.kind, EventKind::Update { .. })
    }

    /// The first callback argument: `{"Type","Name","ShowName","ID"}`.
    pub fn event_value(&self) -> Value {
        json!({
            "Type": self.type_name(),
            "Name": self.display_name(),
            "ShowName": self.show_name,
            "ID": self.id,
        })
    }

    /// The second callback argument, shaped per type.
    pub fn msg_value(&self) -> Value {
        match &self.kind {
            EventKind::Start | EventKind::End => json!({}),
            EventKind::StartOne(info) => task_info_value(info, None),
            EventKind::EndOne { info, success } => task_info_value(info, Some(*success)),
            EventKind::Update {
                downloaded,
                total,
                speed,
                contiguous,
            } => json!({"Downloaded": downloaded, "Total": total, "Speed": speed,
                        "Contiguous": contiguous}),
            EventKind::Msg { text } => json!({ "Text": text }),
            EventKind::Err { error, code } => json!({"Error": error, "Code": code}),
        }
    }

    pub fn event_json(&self) -> String {
        self.event_value().to_string()
    }

    pub fn msg_json(&self) -> String {
        self.msg_value().to_string()
    }
}

fn task_info_value(info: &TaskInfo, success: Option<bool>) -> Value {
    let mut v = json!({
        "URL": info.url,
        "SavePath": info.save_path,
        "ShowName": info.show_name,
        "Index": info.index,
        "Total": info.total,
    });
    if let (Some(s), Some(obj)) = (success, v.as_object_mut()) {
        obj.insert("Success".into(), Value::Bool(s));
        if let Some(p) = &info.saved_as {
            obj.insert("SavedAs".into(), Value::String(p.clone()));
        }
        if !info.sources.is_empty() {
            let list = info.sources.iter().map(SourceShare::value).collect();
            obj.insert("Sources".into(), Value::Array(list));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_go_shapes() {
        let e = Event::global(EventKind::Start);
        assert_eq!(
            e.event_value(),
            json!({"Type":"start","Name":"Start","ShowName":"Global","ID":""})
        );
        assert_eq!(e.msg_json(), "{}");
        let info = TaskInfo {
            url: "http://x/a".into(),
            save_path: "a".into(),
            show_name: "a".into(),
            index: 1,
            total: 2,
            saved_as: None,
            sources: Vec::new(),
        };
        let e = Event::task(
            EventKind::EndOne {
                info,
                success: true,
            },
            "a",
            "id1",
        );
        assert_eq!(e.type_name(), "endOne");
        assert_eq!(
            e.msg_value(),
            json!({"URL":"http://x/a","SavePath":"a","ShowName":"a","Index":1,"Total":2,"Success":true})
        );
        let e = Event::task(
            EventKind::Err {
                error: "boom".into(),
                code: "http_status",
            },
            "a",
            "id1",
        );
        assert_eq!(e.msg_value(), json!({"Error":"boom","Code":"http_status"}));
        let e = Event::task(
            EventKind::Update {
                downloaded: 5,
                total: 10,
                speed: 1.5,
                contiguous: 3,
            },
            "a",
            "id1",
        );
        assert_eq!(
            e.msg_value(),
            json!({"Downloaded":5,"Total":10,"Speed":1.5,"Contiguous":3})
        );
        assert_eq!(e.event_value()["ID"], "id1");
    }
}
