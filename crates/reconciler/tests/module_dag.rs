//! The reconciler's modules form layers: no module reaches, directly or through others, back
//! into one that uses it, so reading top-down (and "go to definition") never loops. This test
//! reads `src/*.rs`, collects each module's `crate::<module>` references outside comments and
//! its `#[cfg(test)]` tail, and checks the graph for cycles and for the layering the crate
//! documents.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module's code: comment lines and the unit tests at its end left out.
fn code_of(source: &str) -> String {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(end) => &source[..end],
        None => source,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The modules `code` names through `crate::`, including `use crate::{a, b::C}`.
fn references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every module of `src` (but `lib.rs`, which declares them all) and the modules it uses.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(src).expect("src directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        if module == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("module source");
        let mut uses = references(&code_of(&source));
        uses.remove(&module);
        graph.insert(module, uses);
    }
    graph
}

/// A cycle, as the path of modules around it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn reconciler_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    for module in [
        "model",
        "render",
        "job",
        "plan",
        "observe",
        "execute",
        "controller",
    ] {
        assert!(graph.contains_key(module), "no module {module}: {graph:?}");
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle: {}\nmodule graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
    // The layering `lib.rs` documents: every use points to a lower line.
    let height = |m: &str| {
        LAYERS
            .iter()
            .position(|layer| layer.contains(&m))
            .map(|top_down| LAYERS.len() - top_down)
            .unwrap_or_else(|| panic!("module {m} is in no layer of LAYERS (and of lib.rs)"))
    };
    for (module, uses) in &graph {
        for used in uses {
            assert!(
                height(used) < height(module),
                "{module} uses {used}, which is not on a lower layer"
            );
        }
    }
}

/// The layers of `lib.rs`'s module diagram, top first.
const LAYERS: &[&[&str]] = &[
    &["controller"],
    &["execute"],
    &["observe"],
    &["plan", "preview"],
    &["render", "job", "proof", "retention", "context", "leader"],
    &["model", "metrics", "loaded"],
];

#[test]
fn the_reference_scanner_sees_every_form() {
    let code = "use crate::model::{A, B};\nuse crate::{job, render::{self, X}};\nfn f() { crate::plan::plan(); }\n// crate::observe in a comment\n";
    let found = references(&code_of(code));
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["job", "model", "plan", "render"]
    );
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".into()].into());
    graph.insert("b".into(), ["c".into()].into());
    graph.insert("c".into(), ["a".into()].into());
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}
