//! The module layering of docs/architecture.md, checked on every `cargo test`: each
//! reference from one top-level module of src/ to another (`use crate::x::…`, a
//! `crate::x::…` path, `crate::{x, y}`, or `super::x` from a top-level file) must point to a
//! module lower in the document's order, so there can be no import cycle. A failure names
//! the offending edges with file and line, and any cycle among them.
//!
//! Test code inside src/ counts too: a `#[cfg(test)]` module that imports upwards is an
//! upward edge of the library as read, and lower layers' tests should not need upper ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The document and the line in it that lists the layers, bottom first, as `code` spans.
const DOC: &str = "docs/architecture.md";
const ORDER_MARK: &str = "tests/architecture.rs reads this line";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

/// The layer order from the document: the backticked names on the marked line.
fn documented_order(doc: &str) -> Vec<String> {
    let line = doc
        .lines()
        .find(|l| l.contains(ORDER_MARK))
        .unwrap_or_else(|| panic!("{DOC}: no line containing '{ORDER_MARK}' (the layer order, bottom first)"));
    line.split('`').skip(1).step_by(2).map(str::to_string).filter(|s| s != "tests/architecture.rs").collect()
}

/// Top-level modules: src/x.rs and src/x/mod.rs, the crate roots excepted.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut mods = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() && p.join("mod.rs").exists() {
            mods.insert(name);
        } else if p.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            mods.insert(name);
        }
    }
    mods
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{…}` group (`a, b::c, d::{e, f}` → a, b, d).
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(ident_at(s[start..i].trim_start()));
                return heads;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident_at(s[start..i].trim_start()));
                start = i + 1;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules `code` (one file's text) names. `depth` is how many `super::` reach
/// the crate root from the file's own module (1 for src/x.rs and src/x/mod.rs, 2 for
/// src/x/y.rs); a group `crate::{…}` may span lines, so the scan runs over the whole text.
fn referenced(code: &str, depth: usize, modules: &BTreeSet<String>) -> Vec<(usize, String)> {
    // Line comments out (doc prose may name modules); line numbers kept.
    let code: String = code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut push = |pos: usize, name: &str| {
        if modules.contains(name) {
            found.push((line_of(pos), name.to_string()));
        }
    };
    let bytes = code.as_bytes();
    for (pos, _) in code.match_indices("crate::") {
        // `crate` as a whole word (`$crate::` of a macro counts; `mycrate::` does not).
        if pos > 0 && (bytes[pos - 1].is_ascii_alphanumeric() || bytes[pos - 1] == b'_') {
            continue;
        }
        let rest = &code[pos + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => group_heads(group).into_iter().for_each(|h| push(pos, h)),
            None => push(pos, ident_at(rest)),
        }
    }
    // `super::` chains that climb to the crate root.
    let mut i = 0;
    while let Some(off) = code[i..].find("super::") {
        let pos = i + off;
        let prev_ok =
            pos == 0 || !(bytes[pos - 1].is_ascii_alphanumeric() || bytes[pos - 1] == b'_' || bytes[pos - 1] == b':');
        let mut rest = &code[pos..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if prev_ok && ups == depth {
            match rest.strip_prefix('{') {
                Some(group) => group_heads(group).into_iter().for_each(|h| push(pos, h)),
                None => push(pos, ident_at(rest)),
            }
        }
        i = pos + "super::".len() * ups.max(1);
    }
    found
}

fn references(root: &Path, modules: &BTreeSet<String>) -> Vec<Reference> {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut refs = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().to_string()).collect();
        let from = parts[0].trim_end_matches(".rs").to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        // src/x.rs, src/x/mod.rs: module depth 1; src/x/y.rs: 2; src/x/y/mod.rs: 2.
        let depth = parts.len() - usize::from(parts.last().unwrap() == "mod.rs");
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (line, to) in referenced(&text, depth, modules) {
            if to != from {
                refs.push(Reference {
                    from: from.clone(),
                    to,
                    file: format!("src/{}", parts.join("/")),
                    line,
                    text: lines.get(line - 1).map_or(String::new(), |l| l.trim().to_string()),
                });
            }
        }
    }
    refs
}

/// A cycle of the module graph, if it has one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        u: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in graph.get(u).into_iter().flatten() {
            match state.get(v.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(v, graph, state, stack) {
                        return Some(c);
                    }
                }
                1 => {
                    let at = stack.iter().position(|w| w == v).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(v.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in graph.keys() {
        if state.get(u.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(u, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Every problem with `refs` against `order`: modules missing from the order, cycles,
/// and references that do not point downwards.
fn problems(order: &[String], modules: &BTreeSet<String>, refs: &[Reference]) -> Vec<String> {
    let mut out = Vec::new();
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    for m in modules {
        if !rank.contains_key(m.as_str()) {
            out.push(format!("module `{m}` (src/) is not in the layer order of {DOC}: place it there"));
        }
    }
    for m in order {
        if !modules.contains(m) {
            out.push(format!("{DOC} lists `{m}`, which is not a top-level module of src/"));
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in refs {
        graph.entry(r.from.clone()).or_default().insert(r.to.clone());
    }
    if let Some(cycle) = find_cycle(&graph) {
        let mut msg = format!("import cycle: {}", cycle.join(" -> "));
        for w in cycle.windows(2) {
            if let Some(r) = refs.iter().find(|r| r.from == w[0] && r.to == w[1]) {
                msg += &format!("\n    {} -> {}: {}:{}: {}", r.from, r.to, r.file, r.line, r.text);
            }
        }
        out.push(msg);
    }
    for r in refs {
        if let (Some(&a), Some(&b)) = (rank.get(r.from.as_str()), rank.get(r.to.as_str())) {
            if b >= a {
                out.push(format!(
                    "{} (layer {}) imports {} (layer {}), which is not below it: {}:{}: {}",
                    r.from,
                    a + 1,
                    r.to,
                    b + 1,
                    r.file,
                    r.line,
                    r.text
                ));
            }
        }
    }
    out
}

#[test]
fn modules_import_only_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join(DOC)).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let order = documented_order(&doc);
    let modules = top_level_modules(&root.join("src"));
    let refs = references(root, &modules);
    assert!(refs.len() > 50, "only {} cross-module references found: is the scanner broken?", refs.len());
    let found = problems(&order, &modules, &refs);
    assert!(found.is_empty(), "module layering ({DOC}) broken:\n  {}", found.join("\n  "));
}

#[test]
fn scanner_sees_every_form_of_reference() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    let code = "use crate::a::X;\nfn f() { crate::b::g(); }\nuse crate::{c::Y,\n  d::{Z, W}};\n\
                // crate::e in a comment\nlet s = mycrate::e::h; use super::e::Q;\n";
    let names: Vec<(usize, String)> = referenced(code, 2, &modules);
    let got: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(got, ["a", "b", "c", "d"], "{names:?}");
    assert_eq!(names[2].0, 3, "a group's line is where `crate::{{` is");
    // From a top-level file one `super::` is the crate root.
    let names = referenced("use super::e::Q;\nuse super::super::a;\n", 1, &modules);
    assert_eq!(names, [(1, "e".to_string())]);
    let names = referenced("mod t { use super::super::{a, b}; }", 2, &modules);
    assert_eq!(names.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn an_upward_import_and_a_cycle_are_reported() {
    let order: Vec<String> = ["low", "mid", "high"].iter().map(|s| s.to_string()).collect();
    let modules: BTreeSet<String> = order.iter().cloned().collect();
    let r = |from: &str, to: &str| Reference {
        from: from.into(),
        to: to.into(),
        file: format!("src/{from}.rs"),
        line: 7,
        text: format!("use crate::{to}::X;"),
    };
    assert!(problems(&order, &modules, &[r("high", "mid"), r("mid", "low")]).is_empty());
    let p = problems(&order, &modules, &[r("mid", "high")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("mid (layer 2) imports high (layer 3)") && p[0].contains("src/mid.rs:7"), "{p:?}");
    let p = problems(&order, &modules, &[r("high", "low"), r("low", "mid"), r("mid", "high")]);
    assert!(p.iter().any(|m| m.starts_with("import cycle: ")), "{p:?}");
    let p = problems(&order[..2], &modules, &[]);
    assert!(p.iter().any(|m| m.contains("`high`")), "{p:?}");
}
