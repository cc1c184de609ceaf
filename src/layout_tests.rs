//! The layout's promise, checked: no module of the crate imports a module that imports
//! it back (ARCHITECTURE.md: imports point downward only). Reads the sources; test code
//! (`tests.rs` files, `#[cfg(test)]` tails) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names as `crate::…`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if !relative.ends_with(".rs") || relative.ends_with("tests.rs") || relative.contains("tests/") {
                continue;
            }
            let top = relative.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let name: String =
                    code[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    graph.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = import_graph();
    assert!(graph.contains_key("server") && graph["server"].contains("gateway"), "{graph:?}");
    let cycles: Vec<(&String, &String)> = graph
        .iter()
        .flat_map(|(a, targets)| targets.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a < b && graph.get(*b).is_some_and(|back| back.contains(*a)))
        .collect();
    assert!(cycles.is_empty(), "modules importing each other: {cycles:?}");
}

#[test]
fn the_application_layer_knows_no_http() {
    let gateway = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway");
    for entry in std::fs::read_dir(gateway).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in ["axum::", "http::", "crate::server"] {
            assert!(!text.contains(banned), "{} mentions {banned}", path.display());
        }
    }
}
