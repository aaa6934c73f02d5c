//! The engine's files depend on each other in one direction only: no import cycles.
//!
//! Reads `src/*.rs`, takes an edge from a file to every module it names
//! (`crate::driver::…`, `use crate::{log, …}`) and to the module that defines every crate-root
//! item it names (`crate::Engine` is `engine.rs`, by the root's `pub use`), and fails naming a
//! cycle. The crate root only declares modules and re-exports, so every item has one file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The source without comments (doc links would count as edges).
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
}

/// Root re-exports: item → the module that defines it.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for statement in code_of(root).split(';') {
        let statement = statement.trim();
        let Some(rest) = statement.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in identifiers(names) {
            if name != "self" {
                items.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    items
}

/// The modules file `module` depends on.
fn dependencies(
    module: &str,
    code: &str,
    modules: &BTreeSet<String>,
    items: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let resolve = |name: &str| -> Option<String> {
        if modules.contains(name) {
            Some(name.to_string())
        } else {
            items.get(name).cloned()
        }
    };
    let mut found = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            if let Some(braced) = rest.strip_prefix('{') {
                // `use crate::{a, b::C, D}`: the first name of each path.
                let end = braced.find('}').unwrap_or(braced.len());
                for path in braced[..end].split(',') {
                    if let Some(first) = identifiers(path).next() {
                        found.extend(resolve(first));
                    }
                }
            } else if let Some(first) = identifiers(rest).next() {
                if rest.starts_with(first) {
                    found.extend(resolve(first));
                }
            }
        }
    }
    found.remove(module);
    found
}

/// A cycle of `graph`, if it has one (depth-first, white/grey/black).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn graph_of(sources: &BTreeMap<String, String>, root: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let items = reexports(root);
    sources
        .iter()
        .map(|(module, source)| {
            let deps = dependencies(module, &code_of(source), &modules, &items);
            (module.clone(), deps)
        })
        .collect()
}

#[test]
fn the_engines_files_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    let mut root = String::new();
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if name == "lib" {
            root = text;
        } else {
            sources.insert(name, text);
        }
    }
    assert!(sources.len() > 10, "read only {} files", sources.len());

    // The root declares modules and re-exports; it defines nothing that a file could
    // depend on without naming the file.
    for statement in code_of(&root).split(';') {
        let statement = statement
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("#!") && !l.starts_with("#["))
            .collect::<Vec<_>>()
            .join(" ");
        let statement = statement.trim();
        let allowed = statement.is_empty()
            || ["mod ", "pub mod ", "pub use ", "pub(crate) use "]
                .iter()
                .any(|p| statement.starts_with(p));
        assert!(
            allowed,
            "src/lib.rs defines `{statement}`: define it in a module and re-export it"
        );
    }

    let graph = graph_of(&sources, &root);
    assert!(
        graph.get("driver").is_some_and(|d| d.contains("log")),
        "the graph misses driver → log: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between the engine's files: {}\n(full graph: {graph:#?})",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_reader_sees_what_a_file_names() {
    let sources: BTreeMap<String, String> = [
        (
            "a",
            "use crate::{b, C};\nfn f() { crate::d::x(); } // crate::e",
        ),
        ("b", "use super::Cx;"),
        ("c", "pub struct C;"),
        ("d", "use crate::a::f;"),
        ("e", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let graph = graph_of(&sources, "pub use c::{C, Cx};\nmod a;");
    let deps = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(deps("a"), ["b", "c", "d"]);
    assert_eq!(deps("b"), ["c"]);
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".to_string(), "d".to_string(), "a".to_string()])
    );
}
