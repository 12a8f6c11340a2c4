//! The source layout rules of issue 16, checked on every `cargo test`: no import cycle
//! between the top-level modules of a crate (`native/engine/src`, `native/ffi/src`), and
//! no source file over 600 lines under `native/*/src`.
//!
//! A module depends on another when its files name `crate::other` outside comments
//! (a `use crate::other::...`, a `use crate::{other, ...}`, or a path in code). Doc
//! links are comments and do not count: they create no dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn native_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("native/")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("readable source folder") {
            let p = entry.expect("folder entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`http/lanes.rs` → `http`); None for the crate
/// root.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The text of `source` without `//` comments (line and doc comments).
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal would be cut too; it only loses edges
            // named after it on that line, and none of our strings name `crate::`.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules named by `crate::X` paths in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `tthsd_engine::...` or `my_crate::` are not `crate::`.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d}`: every top-level name of the group.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident_at(item.trim());
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// The module graph of the crate whose sources are under `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let Some(module) = top_module(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        let deps = graph.entry(module.clone()).or_default();
        for r in crate_refs(&strip_comments(&text)) {
            if r != module {
                deps.insert(r);
            }
        }
    }
    graph
}

/// A cycle in `graph` (its modules in order, the first repeated at the end), if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(node, graph, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_sees_references_and_cycles() {
    let refs = crate_refs(
        "use crate::a::B;\nuse crate::{b, c::D};\nlet x = crate::d::f();\nuse tthsd_crate::e;",
    );
    let names: Vec<_> = refs.into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(crate_refs(&strip_comments("//! see [X](crate::x::X)\n")).is_empty());
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry((*a).into()).or_default().insert((*b).into());
            m.entry((*b).into()).or_default();
        }
        m
    };
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
}

#[test]
fn no_import_cycle_between_the_modules_of_a_crate() {
    for krate in ["engine", "ffi"] {
        let src = native_dir().join(krate).join("src");
        let graph = module_graph(&src);
        assert!(graph.len() > 3, "no modules found under {}", src.display());
        if let Some(cycle) = find_cycle(&graph) {
            panic!("import cycle in {krate}: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn no_source_file_over_600_lines() {
    let mut long = Vec::new();
    for entry in std::fs::read_dir(native_dir()).expect("native/") {
        let src = entry.expect("entry").path().join("src");
        if !src.is_dir() {
            continue;
        }
        for file in rust_files(&src) {
            let lines = std::fs::read_to_string(&file)
                .expect("source")
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
