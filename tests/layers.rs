//! The core is built in layers (ARCHITECTURE.md): no module of `src/library/` may use a
//! module of a higher layer, the modules' uses have no cycle, and the core never uses the
//! shells (window, CLI, HTTP server) or their crates. This test reads the sources, so it
//! runs in CI with the rest of the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. Every module of `src/library/` is in exactly one.
const LAYERS: &[&[&str]] = &[
    &[
        "cache_file",
        "clock",
        "error",
        "fs_safe",
        "crashpoint",
        "memory",
        "model",
        "layout",
        "shards",
        "sym",
        "walk",
    ],
    &[
        "registry",
        "registry_pack",
        "registry_copy",
        "metadata",
        "fit",
    ],
    &["scan", "sources", "cache", "listing_bytes"],
    &[
        "persist",
        "watch",
        "download",
        "delete",
        "import",
        "verify",
        "duplicates",
        "reclaim",
        "shared",
    ],
    &["service"],
];

/// Crates and crate modules the core must never use.
const FORBIDDEN: &[&str] = &[
    "egui",
    "eframe",
    "egui_extras",
    "poll_promise",
    "axum",
    "tokio",
    "tower",
    "crate::app",
    "crate::cli",
    "crate::server",
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"))
}

fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/library")
}

/// Every `.rs` file under `dir`, with its top-level module under `src/library/`.
fn sources(dir: &Path, top: Option<&str>, out: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            sources(&path, Some(top.unwrap_or(&name)), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            match top {
                Some(top) => out.push((top.to_string(), path)),
                None if name == "mod" => {} // the root: re-exports only
                None => out.push((name, path)),
            }
        }
    }
}

/// Strips comments (line and block) and string literals, so that only code is searched.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The names a path prefix is followed by: `p::name` or `p::{a, b::c, d::{..}}` (top-level
/// names of the group only).
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // part of a longer path, e.g. `super::super::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut current = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(first_ident(&current));
                        current.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    current.push(c);
                }
            }
            names.push(first_ident(&current));
        } else {
            names.push(first_ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// `pub use module::{Item, ..}` in `src/library/mod.rs`: which module each re-export is from.
fn reexports() -> BTreeMap<String, String> {
    let code = code_only(&fs::read_to_string(library_dir().join("mod.rs")).unwrap());
    let mut map = BTreeMap::new();
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = first_ident(rest);
        let items = rest[module.len()..].trim_start_matches("::");
        let items = items.trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',') {
            let item = item.trim();
            let item = item.rsplit("::").next().unwrap_or(item);
            let item = item.rsplit(" as ").next().unwrap_or(item).trim();
            if !item.is_empty() {
                map.insert(item.to_string(), module.clone());
            }
        }
    }
    map
}

/// Module → the other core modules it uses (with the file where each use is).
fn uses() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let reexports = reexports();
    let mut files = Vec::new();
    sources(&library_dir(), None, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (module, path) in files {
        let code = code_only(&fs::read_to_string(&path).unwrap());
        let nested = path.parent().unwrap() != library_dir();
        let mut names: Vec<(String, bool)> = names_after(&code, "crate::library::")
            .into_iter()
            .map(|n| (n, true))
            .collect();
        // `super::` is the library root in a top-level module; `super::super::` is in a
        // nested one. (Inside an inline `mod tests` the same prefix means the file's own
        // module: names that are not core modules are skipped for that reason.)
        let up = if nested { "super::super::" } else { "super::" };
        names.extend(names_after(&code, up).into_iter().map(|n| (n, false)));
        let entry = graph.entry(module.clone()).or_default();
        for (name, absolute) in names {
            let target = if LAYERS.iter().any(|l| l.contains(&name.as_str())) {
                name
            } else if let Some(m) = reexports.get(&name).filter(|_| absolute) {
                m.clone()
            } else if !absolute {
                continue;
            } else {
                panic!(
                    "{}: `{name}` is neither a core module nor a re-export",
                    path.display()
                )
            };
            if target != module {
                entry.entry(target).or_insert_with(|| path.clone());
            }
        }
    }
    graph
}

#[test]
fn no_core_module_uses_a_higher_layer() {
    let mut wrong = Vec::new();
    for (module, targets) in uses() {
        for (target, path) in targets {
            if layer_of(&target) > layer_of(&module) {
                wrong.push(format!(
                    "{} (layer {}) uses {target} (layer {}) in {}",
                    module,
                    layer_of(&module),
                    layer_of(&target),
                    path.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layer violations:\n{}", wrong.join("\n"));
}

#[test]
fn core_modules_use_each_other_without_a_cycle() {
    let graph = uses();
    // Depth-first search with colours: a grey node met again closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        grey: &mut Vec<String>,
        black: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if black.contains(node) {
            return None;
        }
        if let Some(at) = grey.iter().position(|g| g == node) {
            let mut cycle = grey[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        grey.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|t| t.keys()) {
            if let Some(cycle) = visit(next, graph, grey, black) {
                return Some(cycle);
            }
        }
        grey.pop();
        black.insert(node.to_string());
        None
    }
    let mut black = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut black) {
            panic!("cycle among core modules: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_core_never_uses_the_shells_or_their_crates() {
    let mut files = Vec::new();
    sources(&library_dir(), None, &mut files);
    files.push((String::new(), library_dir().join("mod.rs")));
    let mut wrong = Vec::new();
    for (_, path) in files {
        let code = code_only(&fs::read_to_string(&path).unwrap());
        for name in FORBIDDEN {
            let pattern = format!("{name}::");
            let used = code.match_indices(&pattern).any(|(at, _)| {
                !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if used {
                wrong.push(format!("{} uses {name}", path.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_nested_uses() {
    // The parser this test relies on, on the forms the sources use.
    let code = code_only(
        "use crate::library::{model::{A, B}, error::Result};\n\
         // use crate::library::service::X;\n\
         let s = \"crate::library::app\";\n\
         fn f() { crate::library::registry::RegistryLock::acquire(); }",
    );
    assert_eq!(
        names_after(&code, "crate::library::"),
        vec!["model", "error", "registry"]
    );
}

#[test]
fn each_core_item_has_one_path() {
    // A module whose items are re-exported from `library` is private, so that each item is
    // reached as `library::Item` only; a public module is a namespace whose items are not
    // re-exported.
    let code = code_only(&fs::read_to_string(library_dir().join("mod.rs")).unwrap());
    let re_exported: BTreeSet<String> = reexports().into_values().collect();
    let mut wrong = Vec::new();
    for line in code.lines().map(str::trim) {
        if let Some(module) = line.strip_prefix("pub mod ") {
            let module = module.trim_end_matches(';');
            if re_exported.contains(module) {
                wrong.push(format!(
                    "`{module}` is public and its items are re-exported too"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        re_exported.contains("model") && code.contains("mod model;"),
        "the check sees the re-exports"
    );
}
