//! The shape of the code, checked: every store module stays private to its subsystem, no
//! module reaches into another subsystem's `memory` or `postgres` module, and the
//! top-level modules of both crates import each other without a circle (docs/
//! ARCHITECTURE.md draws the result). Read from the source text, so it needs no build
//! tooling and fails with the offending file and path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, except test-only files (`tests.rs`, `*_tests.rs`,
/// `tests/` directories): tests may reach anywhere.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" {
                out.extend(sources(&path));
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`accounts/tokens/actor.rs` → `accounts`);
/// `None` for the crate root.
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every `crate::a::b::…` path in `text`, as its segments (`{` groups not expanded).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` (macros) counts too: the expansion names that path.
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

/// The import graph between top-level modules of the crate whose sources are in `root`.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(root);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(root, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(root, file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap_or_default();
        let entry = edges.entry(from.clone()).or_default();
        for path in crate_paths(&text) {
            if path[0] != from && modules.contains(&path[0]) {
                entry.insert(path[0].clone());
            }
        }
    }
    edges
}

/// A circle in `edges`, as the modules along it, if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, done, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

fn actors_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn server_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../src")
}

#[test]
fn no_module_reaches_into_another_subsystems_store() {
    let root = actors_src();
    let mut problems = Vec::new();
    for file in sources(&root) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        // A store module that is not private could be imported from anywhere.
        for line in text.lines().map(str::trim) {
            if (line.starts_with("pub mod memory") || line.starts_with("pub mod postgres"))
                && !shown.starts_with("store/")
            {
                problems.push(format!("{shown}: `{line}` makes a store module public"));
            }
        }
        let own = module_of(&root, &file);
        for path in crate_paths(&text) {
            let reaches_store = path
                .iter()
                .skip(1)
                .any(|segment| segment == "memory" || segment == "postgres");
            // `store` is the shared infrastructure (pools, transactions, row helpers).
            if reaches_store && path[0] != "store" && Some(&path[0]) != own.as_ref() {
                problems.push(format!(
                    "{shown}: imports crate::{} (another subsystem's store)",
                    path.join("::")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn modules_import_each_other_without_a_circle() {
    for root in [actors_src(), server_src()] {
        let edges = graph(&root);
        assert!(
            edges.len() > 3,
            "read no modules under {}: the check would pass vacuously",
            root.display()
        );
        if let Some(circle) = find_circle(&edges) {
            panic!(
                "modules under {} import each other in a circle: {}",
                root.display(),
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_checks_can_fail() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(
        find_circle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::automation::memory::X; $crate::error::Code"),
        vec![
            vec!["automation".to_owned(), "memory".into(), "X".into()],
            vec!["error".to_owned(), "Code".into()],
        ]
    );
}
