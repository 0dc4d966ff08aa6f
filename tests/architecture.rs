//! The layering rules of ARCHITECTURE.md, checked against the code (as rust-analyzer's tidy
//! tests keep its rules true).
//!
//! ARCHITECTURE.md's "Dependency rules" table names every room of `src/` (a top-level file or
//! folder) and the rooms it may use. This test reads every `crate::ROOM` path in each room's
//! files (in `use` lines and inline, `crate::{a, b}` groups included; `arc::ROOM` in
//! `main.rs`) and fails on a room the table does not allow, on a room the table does not know,
//! on a room of the table that does not exist, and on a cycle between rooms.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The table: room -> rooms it may use.
fn rules() -> BTreeMap<String, BTreeSet<String>> {
    let text = fs::read_to_string(repo().join("ARCHITECTURE.md")).expect("reading ARCHITECTURE.md");
    let section = text.split("## Dependency rules").nth(1).expect("a 'Dependency rules' section");
    let mut rules = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `room` | may use | ... |
        if cells.len() < 3 || !cells[1].starts_with('`') {
            continue;
        }
        let room = cells[1].trim_matches('`').trim_end_matches('/').trim_end_matches(".rs").to_owned();
        let allowed = cells[2]
            .split(',')
            .map(|r| r.trim().trim_matches('`').trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty() && r != "nothing")
            .collect();
        rules.insert(room, allowed);
    }
    assert!(rules.len() >= 10, "the rules table of ARCHITECTURE.md was not found: {rules:?}");
    rules
}

/// Every `.rs` file beneath `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.expect("listing src").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file of `src/` belongs to: its folder, or its own name.
fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file beneath src");
    let first = rel.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The rooms `text` refers to through `prefix` (`crate::` or `arc::`), with line numbers;
/// comments are left out.
fn references(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d}`: the first segment of each top-level item.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push((n + 1, first_segment(&item)));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                found.push((n + 1, first_segment(&item)));
            } else {
                found.push((n + 1, first_segment(rest)));
            }
        }
    }
    found.retain(|(_, room)| !room.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The rooms of the crate and who uses whom: room -> (used room -> first place).
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let room = room_of(&src, &file);
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let prefix = if room == "main" { "arc::" } else { "crate::" };
        let uses = graph.entry(room.clone()).or_default();
        for (line, used) in references(&text, prefix) {
            if used != room {
                let place = format!("{}:{line}", file.strip_prefix(repo()).unwrap_or(&file).display());
                uses.entry(used).or_insert(place);
            }
        }
    }
    graph
}

/// Items of the crate root that are not rooms (re-exports and `run`), used as `crate::X`.
const ROOT_ITEMS: [&str; 2] = ["run", "Outcome"];

#[test]
fn rooms_use_only_what_architecture_md_allows() {
    let rules = rules();
    let graph = graph();
    let mut problems = Vec::new();
    for room in graph.keys().filter(|r| !rules.contains_key(*r)) {
        problems.push(format!("room {room} of src/ is not in ARCHITECTURE.md's rules table"));
    }
    for room in rules.keys().filter(|r| !graph.contains_key(*r)) {
        problems.push(format!("room {room} of ARCHITECTURE.md's rules table is not in src/"));
    }
    for (room, uses) in &graph {
        let Some(allowed) = rules.get(room) else { continue };
        for (used, place) in uses {
            let used_room = if ROOT_ITEMS.contains(&used.as_str()) { "lib" } else { used.as_str() };
            if !allowed.contains(used_room) && !allowed.contains("everything") {
                problems.push(format!("{place}: {room} uses {used}, which ARCHITECTURE.md does not allow"));
            }
        }
    }
    assert!(problems.is_empty(), "the layering rules are broken:\n  {}", problems.join("\n  "));
}

#[test]
fn rooms_form_no_cycle() {
    let graph = graph();
    // Depth-first search for a back edge; `lib` and `main` are the top, which use everything
    // and which nothing may use (the rules test forbids it), so they are left out.
    fn visit<'a>(
        room: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|r| *r == room) {
            return Some(format!("{} -> {room}", path[at..].join(" -> ")));
        }
        if done.contains(room) {
            return None;
        }
        path.push(room);
        for used in graph.get(room).into_iter().flat_map(|u| u.keys()) {
            if graph.contains_key(used) && used != "lib" && used != "main" {
                if let Some(cycle) = visit(used, graph, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(room);
        None
    }
    let mut done = BTreeSet::new();
    for room in graph.keys().filter(|r| *r != "lib" && *r != "main") {
        if let Some(cycle) = visit(room, &graph, &mut Vec::new(), &mut done) {
            panic!("the rooms of src/ import each other in a cycle: {cycle}");
        }
    }
}

#[test]
fn references_are_found_in_every_form() {
    let text = "use crate::format::{self, Index};\nuse crate::{read, ui::escape};\n\
                let x = crate::sys::thread_pool(2); // crate::list in a comment\n\
                let y = notcrate::write::x;\n";
    let found: Vec<String> = references(text, "crate::").into_iter().map(|(_, r)| r).collect();
    assert_eq!(found, ["format", "read", "ui", "sys"]);
}
