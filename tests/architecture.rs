//! The module layering of docs/architecture.md, checked on every `cargo test`: each
//! reference from one top-level module of src/ to another (`use crate::x::…`, a
//! `crate::x::…` path, `crate::{x, y}`, or `super::x` from a top-level file) must point to a
//! module lower in the document's order, so there can be no import cycle. A failure names
//! the offending edges with file and line, and any cycle among them.
//!
//! Inside the folders of [`ACYCLIC_INSIDE`], at every depth, the submodules of one module
//! (its files and subfolders) may import each other but not in a cycle; a failure names the
//! cycle and the file and line of each of its edges.
//!
//! Test code inside src/ counts too: a `#[cfg(test)]` module that imports upwards is an
//! upward edge of the library as read, and lower layers' tests should not need upper ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The document and the line in it that lists the layers, bottom first, as `code` spans.
const DOC: &str = "docs/architecture.md";
const ORDER_MARK: &str = "tests/architecture.rs reads this line";

/// Top-level folders of src/ whose submodules, at every depth (e.g. `diffusion::smc`'s
/// files among themselves as well as `diffusion`'s), must not import each other in a cycle.
const ACYCLIC_INSIDE: &[&str] = &["diffusion", "mc", "nn"];

/// Folders of [`ACYCLIC_INSIDE`] that still have cycles inside, skipped with everything
/// below them until they are untangled. The test fails once one of them is acyclic, so that
/// it is taken off this list.
const NOT_YET_ACYCLIC: &[&str] = &[];

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

// Cycles among the submodules of one module.

/// An import of one submodule of `parent` by another (its code or code below it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SiblingRef {
    parent: Vec<String>,
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `text` with its comments and the insides of its string and character literals blanked
/// (newlines and byte offsets kept), so that every brace and path left is code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut blank = |from: usize, to: usize| out[from..to].iter_mut().filter(|c| **c != b'\n').for_each(|c| *c = b' ');
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && is_ident_byte(b[i - 1]);
        i = match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
                blank(i, end);
                end
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    depth += match &b[j..] {
                        [b'/', b'*', ..] => 1,
                        [b'*', b'/', ..] => -1,
                        _ => 0,
                    };
                    j += if b[j..].starts_with(b"/*") || b[j..].starts_with(b"*/") { 2 } else { 1 };
                }
                blank(i, j);
                j
            }
            // r"…", r#"…"#, br"…" (not a raw identifier r#name).
            b'r' if (!prev_ident || (b[i - 1] == b'b' && (i < 2 || !is_ident_byte(b[i - 2])))) => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i + 1
                } else {
                    let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                    let start = i + 2 + hashes;
                    let end = b[start..].windows(close.len()).position(|w| w == close).map_or(b.len(), |e| start + e);
                    blank(start, end);
                    (end + close.len()).min(b.len())
                }
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(i + 1, j.min(b.len()));
                j + 1
            }
            // A character literal ('x', '\n', '\'', '{'); a lifetime ('a) stays.
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                let end = text.get(i + 3..).and_then(|t| t.find('\'')).map_or(b.len(), |e| i + 3 + e);
                blank(i + 1, end);
                end + 1
            }
            b'\'' => match text[i + 1..].chars().next() {
                Some(c) if b.get(i + 1 + c.len_utf8()) == Some(&b'\'') => {
                    blank(i + 1, i + 1 + c.len_utf8());
                    i + 2 + c.len_utf8()
                }
                _ => i + 1,
            },
            _ => i + 1,
        };
    }
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

/// The inline modules (`mod tests { … }`) of blanked code: the byte range of each body, and
/// its name.
fn inline_modules(code: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let b = code.as_bytes();
    let mut named_brace = BTreeMap::new();
    for (pos, _) in code.match_indices("mod ") {
        if pos > 0 && is_ident_byte(b[pos - 1]) {
            continue;
        }
        let rest = code[pos + 4..].trim_start();
        let name = ident_at(rest);
        let after = rest[name.len()..].trim_start();
        if !name.is_empty() && after.starts_with('{') {
            named_brace.insert(code.len() - after.len(), name.to_string());
        }
    }
    let (mut open, mut out) = (Vec::new(), Vec::new());
    for (pos, c) in code.char_indices() {
        match c {
            '{' => open.push(pos),
            '}' => {
                if let Some(start) = open.pop() {
                    if let Some(name) = named_brace.get(&start) {
                        out.push((start..pos, name.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|(r, _)| r.start);
    out
}

/// The segments after a path's root (`a::b::c` → [a, b, c]); a group `a::{b, c::d}` gives
/// one path per item, ending in the item's first segment ([a, b], [a, c]).
fn path_tails(mut rest: &str) -> Vec<Vec<String>> {
    let mut segs = Vec::new();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            return group_heads(group)
                .into_iter()
                .map(|h| segs.iter().cloned().chain(std::iter::once(h.to_string())).collect())
                .collect();
        }
        let id = ident_at(rest);
        if id.is_empty() {
            return vec![segs];
        }
        segs.push(id.to_string());
        match rest[id.len()..].strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![segs],
        }
    }
}

/// Every path blanked `code` names from the crate root (`crate::`, `$crate::`), up
/// (`super::` chains) or from itself (`self::`), resolved against the module the code is
/// in: (byte position, that module, the absolute path).
fn resolved_paths(code: &str, file_module: &[String]) -> Vec<(usize, Vec<String>, Vec<String>)> {
    let b = code.as_bytes();
    let inline = inline_modules(code);
    let mut found = Vec::new();
    for pos in 0..b.len() {
        let root = [&b"crate::"[..], b"self::", b"super::"].iter().any(|r| b[pos..].starts_with(r));
        if !root || (pos > 0 && (is_ident_byte(b[pos - 1]) || b[pos - 1] == b':')) {
            continue;
        }
        let scope: Vec<String> = file_module
            .iter()
            .cloned()
            .chain(inline.iter().filter(|(r, _)| r.contains(&pos)).map(|(_, n)| n.clone()))
            .collect();
        let (base, rest): (Vec<String>, &str) = if b[pos..].starts_with(b"crate::") {
            (Vec::new(), &code[pos + "crate::".len()..])
        } else if b[pos..].starts_with(b"self::") {
            (scope.clone(), &code[pos + "self::".len()..])
        } else if b[pos..].starts_with(b"super::") {
            let mut rest = &code[pos..];
            let mut ups = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                ups += 1;
                rest = r;
            }
            if ups > scope.len() {
                continue;
            }
            (scope[..scope.len() - ups].to_vec(), rest)
        } else {
            continue;
        };
        for tail in path_tails(rest) {
            found.push((pos, scope.clone(), base.iter().cloned().chain(tail).collect()));
        }
    }
    found
}

/// The module path of a file under src/ (`nn/conv.rs` → [nn, conv], `mc/mod.rs` → [mc]);
/// None for the crate roots.
fn module_of(rel: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().unwrap() == "mod.rs" {
        parts.pop();
    } else {
        let last = parts.pop().unwrap();
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    (!(parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main"))).then_some(parts)
}

/// The module path of each file, a file included with `#[path = "x_tests.rs"] mod tests;`
/// (src/nn/unet.rs → src/nn/unet_tests.rs is nn::unet::tests) counted where it is declared.
fn file_modules(files: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut modules: BTreeMap<String, Vec<String>> =
        files.iter().filter_map(|(rel, _)| Some((rel.clone(), module_of(rel)?))).collect();
    for (rel, text) in files {
        let Some(declaring) = modules.get(rel).cloned() else { continue };
        let code = code_only(text);
        for (pos, _) in code.match_indices("#[path") {
            let Some(file) = text[pos..].split('"').nth(1) else { continue };
            let after = code[pos..].split_once(']').map_or("", |(_, a)| a).trim_start();
            let after = after.strip_prefix("pub ").unwrap_or(after);
            let Some(name) = after.strip_prefix("mod ").map(|a| ident_at(a.trim_start())) else { continue };
            let dir = rel.rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
            modules.insert(format!("{dir}{file}"), declaring.iter().cloned().chain([name.to_string()]).collect());
        }
    }
    modules
}

/// The file modules of src/ and what each folder's mod.rs re-exports from its submodules
/// (`pub use conv::{ConvShape, X as Y};` makes `super::ConvShape` and `super::Y` name conv).
struct ModuleTree {
    modules: BTreeSet<Vec<String>>,
    reexports: BTreeMap<(Vec<String>, String), String>,
}

impl ModuleTree {
    fn new(files: &[(String, String)], file_modules: &BTreeMap<String, Vec<String>>) -> Self {
        let mut modules = BTreeSet::new();
        for m in file_modules.values() {
            (1..=m.len()).for_each(|k| {
                modules.insert(m[..k].to_vec());
            });
        }
        let mut tree = ModuleTree { modules, reexports: BTreeMap::new() };
        for (rel, text) in files.iter().filter(|(rel, _)| rel.ends_with("/mod.rs")) {
            let parent = file_modules[rel].clone();
            let code = code_only(text);
            for (pos, _) in code.match_indices("use ") {
                let line_start = code[..pos].rfind('\n').map_or(0, |p| p + 1);
                if !code[line_start..pos].trim_start().starts_with("pub") {
                    continue;
                }
                let stmt = &code[pos + 4..code[pos..].find(';').map_or(code.len(), |e| pos + e)];
                let stmt = stmt.trim_start().trim_start_matches("self::");
                let child = ident_at(stmt);
                if !tree.is_child(&parent, child) {
                    continue;
                }
                let Some(items) = stmt[child.len()..].strip_prefix("::") else { continue };
                for item in items.split([',', '{', '}']).map(str::trim) {
                    let name = item.split(" as ").last().unwrap().rsplit("::").next().unwrap().trim();
                    if !name.is_empty() && name != "self" && name != "*" {
                        tree.reexports.insert((parent.clone(), name.to_string()), child.to_string());
                    }
                }
            }
        }
        tree
    }

    fn is_child(&self, parent: &[String], name: &str) -> bool {
        let mut p = parent.to_vec();
        p.push(name.to_string());
        self.modules.contains(&p)
    }

    /// The submodule of `parent` that `parent::name` is, or comes from by re-export.
    fn child_named(&self, parent: &[String], name: &str) -> Option<String> {
        if self.is_child(parent, name) {
            return Some(name.to_string());
        }
        self.reexports.get(&(parent.to_vec(), name.to_string())).cloned()
    }
}

/// Every import of one submodule by a sibling, inside the top-level folders `checked`, at
/// every depth. `files` are (path under src/ with '/', text).
fn sibling_references(files: &[(String, String)], checked: &[&str]) -> Vec<SiblingRef> {
    let modules = file_modules(files);
    let tree = ModuleTree::new(files, &modules);
    let mut refs = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, text) in files {
        let Some(module) = modules.get(rel) else { continue };
        if !checked.contains(&module[0].as_str()) {
            continue;
        }
        let code = code_only(text);
        let lines: Vec<&str> = text.lines().collect();
        let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
        for (pos, scope, target) in resolved_paths(&code, module) {
            for m in 1..scope.len() {
                let (parent, from) = (&scope[..m], &scope[m]);
                if target.len() <= m || target[..m] != *parent || !tree.is_child(parent, from) {
                    continue;
                }
                let Some(to) = tree.child_named(parent, &target[m]) else { continue };
                let line = line_of(pos);
                // One reference per line and edge (a group `{a::X, a::Y}` names a once).
                if *from != to && seen.insert((parent.to_vec(), from.clone(), to.clone(), rel, line)) {
                    refs.push(SiblingRef {
                        parent: parent.to_vec(),
                        from: from.clone(),
                        to,
                        file: format!("src/{rel}"),
                        line,
                        text: lines.get(line - 1).map_or(String::new(), |l| l.trim().to_string()),
                    });
                }
            }
        }
    }
    refs
}

fn folder(parent: &[String]) -> String {
    format!("src/{}/", parent.join("/"))
}

/// Whether module `parent` lies in (or is) the folder `dir` ("diffusion", "diffusion/smc").
fn lies_in(parent: &[String], dir: &str) -> bool {
    let d: Vec<&str> = dir.split('/').collect();
    parent.len() >= d.len() && parent.iter().zip(&d).all(|(p, d)| p == d)
}

/// The groups of nodes of `graph` that all reach each other (two or more nodes each).
fn tangles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from.to_string()]);
        while let Some(u) = todo.pop() {
            for v in graph.get(&u).into_iter().flatten() {
                if seen.insert(v.clone()) {
                    todo.push(v.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|u| (u, reach(u))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (u, r) in &reached {
        let group: BTreeSet<String> =
            r.iter().filter(|v| reached.get(v).is_some_and(|back| back.contains(*u))).cloned().collect();
        if group.len() > 1 && !out.contains(&group) {
            out.push(group);
        }
    }
    out
}

/// One cycle through each group of submodules that import each other, with the file and
/// line of each edge, folders under `not_yet` excepted; and each folder of `not_yet` that
/// has no cycle left.
fn sibling_cycles(refs: &[SiblingRef], not_yet: &[&str]) -> Vec<String> {
    let mut graphs: BTreeMap<&[String], BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for r in refs {
        graphs.entry(&r.parent).or_default().entry(r.from.clone()).or_default().insert(r.to.clone());
    }
    let mut out = Vec::new();
    let mut cyclic = Vec::new();
    for (parent, graph) in &graphs {
        for group in tangles(graph) {
            cyclic.push(parent.to_vec());
            if not_yet.iter().any(|d| lies_in(parent, d)) {
                continue;
            }
            let inside: BTreeMap<String, BTreeSet<String>> =
                group.iter().map(|u| (u.clone(), graph[u].intersection(&group).cloned().collect())).collect();
            let cycle = find_cycle(&inside).expect("a group that reaches itself has a cycle");
            let mut msg = format!(
                "import cycle among the submodules of {}: {} (move what they share into a module below them)",
                folder(parent),
                cycle.join(" -> ")
            );
            for w in cycle.windows(2) {
                let edge: Vec<&SiblingRef> =
                    refs.iter().filter(|r| r.parent == **parent && r.from == w[0] && r.to == w[1]).collect();
                let more = if edge.len() > 1 { format!(" (and {} more)", edge.len() - 1) } else { String::new() };
                msg +=
                    &format!("\n    {} -> {}: {}:{}: {}{more}", w[0], w[1], edge[0].file, edge[0].line, edge[0].text);
            }
            out.push(msg);
        }
    }
    for d in not_yet {
        if !cyclic.iter().any(|p| lies_in(p, d)) {
            out.push(format!(
                "src/{d}/ has no import cycle among its submodules any more: take it off NOT_YET_ACYCLIC"
            ));
        }
    }
    out
}

fn source_files(src: &Path) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn submodules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&src);
    for d in ACYCLIC_INSIDE.iter().chain(NOT_YET_ACYCLIC) {
        assert!(
            src.join(d).join("mod.rs").exists(),
            "src/{d}/mod.rs: no such module folder (ACYCLIC_INSIDE, NOT_YET_ACYCLIC)"
        );
    }
    for d in NOT_YET_ACYCLIC {
        let top = d.split('/').next().unwrap();
        assert!(ACYCLIC_INSIDE.contains(&top), "NOT_YET_ACYCLIC lists {d}, which is not in ACYCLIC_INSIDE");
    }
    let refs = sibling_references(&files, ACYCLIC_INSIDE);
    assert!(refs.len() > 100, "only {} imports among submodules found: is the scanner broken?", refs.len());
    let found = sibling_cycles(&refs, NOT_YET_ACYCLIC);
    assert!(found.is_empty(), "submodules import each other in a cycle:\n  {}", found.join("\n  "));
}

/// A small tree: a/{x, y, z} import each other in a cycle (through a re-export and from an
/// inline test module), a/{u, v} in another, a/deep/{p, q} in a third; x's test file (a
/// `#[path]` module) counts as x; literals and comments name paths that must not count.
fn cyclic_tree() -> Vec<(String, String)> {
    [
        ("lib.rs", "pub mod a;\n"),
        (
            "a/mod.rs",
            "pub mod deep;\npub mod u;\npub mod v;\npub mod x;\npub mod y;\npub mod z;\n\n\
             pub use z::{Zed, Other as Zee};\n",
        ),
        (
            "a/x.rs",
            "use super::y::Y;\nconst S: &str = \"super::z::Q\"; // super::z::R\n\
             #[cfg(test)]\n#[path = \"x_tests.rs\"]\nmod tests;\n",
        ),
        ("a/x_tests.rs", "use super::y::NotASibling;\nuse crate::a::u::U;\n"),
        ("a/y.rs", "/* super::x */ use crate::a::Zee;\n"),
        (
            "a/z.rs",
            "fn f<'a>(s: &'a str) -> char { let _ = r#\"}\"#; '}' }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::x::X;\n}\n",
        ),
        ("a/u.rs", "use super::v::V;\n"),
        ("a/v.rs", "use super::u::U;\n"),
        ("a/deep/mod.rs", "mod p;\nmod q;\n"),
        ("a/deep/p.rs", "use super::q::Q;\nuse super::super::{x, y};\n"),
        ("a/deep/q.rs", "use super::p::P;\n"),
    ]
    .iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect()
}

#[test]
fn a_cycle_among_submodules_is_reported_with_its_lines() {
    let files = cyclic_tree();
    let refs = sibling_references(&files, &["a"]);
    let edges: BTreeSet<(String, &str, &str, &str, usize)> =
        refs.iter().map(|r| (r.parent.join("/"), r.from.as_str(), r.to.as_str(), r.file.as_str(), r.line)).collect();
    let want: BTreeSet<(String, &str, &str, &str, usize)> = [
        ("a", "x", "y", "src/a/x.rs", 1),
        ("a", "x", "u", "src/a/x_tests.rs", 2),
        ("a", "y", "z", "src/a/y.rs", 1),
        ("a", "z", "x", "src/a/z.rs", 5),
        ("a", "u", "v", "src/a/u.rs", 1),
        ("a", "v", "u", "src/a/v.rs", 1),
        ("a", "deep", "x", "src/a/deep/p.rs", 2),
        ("a", "deep", "y", "src/a/deep/p.rs", 2),
        ("a/deep", "p", "q", "src/a/deep/p.rs", 1),
        ("a/deep", "q", "p", "src/a/deep/q.rs", 1),
    ]
    .iter()
    .map(|&(p, f, t, file, l)| (p.to_string(), f, t, file, l))
    .collect();
    assert_eq!(edges, want, "{refs:#?}");

    let p = sibling_cycles(&refs, &[]);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with("import cycle among the submodules of src/a/: u -> v -> u"), "{p:#?}");
    assert!(p[1].starts_with("import cycle among the submodules of src/a/: x -> y -> z -> x"), "{p:#?}");
    assert!(p[1].contains("z -> x: src/a/z.rs:5: use super::super::x::X;"), "{p:#?}");
    assert!(p[1].contains("y -> z: src/a/y.rs:1: /* super::x */ use crate::a::Zee;"), "{p:#?}");
    assert!(p[2].contains("src/a/deep/: p -> q -> p") && p[2].contains("q -> p: src/a/deep/q.rs:1"), "{p:#?}");

    // A folder not yet untangled is skipped with everything below it, until it is acyclic.
    assert_eq!(sibling_cycles(&refs, &["a"]), Vec::<String>::new());
    assert_eq!(sibling_cycles(&refs, &["a/deep"]).len(), 2);
    let untangled: Vec<SiblingRef> = refs.iter().filter(|r| r.from != "q").cloned().collect();
    let p = sibling_cycles(&untangled, &["a/deep"]);
    assert!(p.iter().any(|m| m.contains("src/a/deep/ has no import cycle") && m.contains("NOT_YET_ACYCLIC")), "{p:#?}");
    // Outside the checked folders nothing is collected.
    assert!(sibling_references(&files, &["b"]).is_empty());
}
