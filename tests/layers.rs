//! The crate's layers, checked from its own source: every `crate::X` path (in `use` lines and
//! inline, outside `#[cfg(test)] mod tests` and comments) is an import of top-level module X.
//! The imports must form no cycle, and each module may import only the layers below it, as
//! src/lib.rs describes. A new import that breaks either fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Small shared utilities any layer above them may use.
const UTILITIES: &[&str] = &["hash", "device", "progress", "paths"];

/// What each top-level module may import (besides [`UTILITIES`]): model and data at the
/// bottom, tokenisation above data, head folders, the one door (`open`), results knowing only
/// predictions, eval and train composing them, cli on top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("hash", &[]),
    ("device", &[]),
    ("progress", &[]),
    ("paths", &[]),
    ("stats", &[]),
    ("hub", &[]),
    ("model", &[]),
    ("data", &[]),
    ("metrics", &["data"]),
    ("features", &["data"]),
    ("heads", &["model"]),
    ("open", &["hub", "model", "data", "features", "heads"]),
    ("results", &["data", "metrics", "stats"]),
    (
        "eval",
        &[
            "open", "model", "data", "features", "heads", "metrics", "results",
        ],
    ),
    (
        "train",
        &[
            "eval", "open", "model", "data", "features", "heads", "metrics", "results",
        ],
    ),
    ("bench", &["model", "open", "eval", "features", "data"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/X.rs` or `src/X/...`).
fn top_module(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its unit-test module and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names imported from the crate root: `crate::X`, and `X` in `use crate::{X, Y::Z}`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The group's items at depth 0 (`{a::{B, C}, d}` names a and d).
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        insert_first_name(&item, &mut names);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            insert_first_name(&item, &mut names);
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
        rest = after;
    }
    names
}

fn insert_first_name(item: &str, names: &mut BTreeSet<String>) {
    let name: String = item
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() {
        names.insert(name);
    }
}

/// (importing module -> imported module -> the files that import it).
fn edges() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(f)).collect();
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let from = top_module(f);
        if ["lib", "main"].contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for to in crate_imports(&code(&text)) {
            if to != from && modules.contains(&to) {
                let rel = f.strip_prefix(src()).unwrap().display().to_string();
                out.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(format!("src/{rel}"));
            }
        }
    }
    out
}

/// A cycle through `start`, if any (depth-first over the module graph).
fn cycle_from(
    start: &str,
    graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Option<Vec<String>> {
    fn walk(
        node: &str,
        start: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).map(|m| m.keys()).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(next, start, graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(start, start, graph, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_parser_sees_grouped_and_inline_imports_but_not_comments_or_tests() {
    let text = "use crate::{data::Level, hub, model::{A, B}};\n\
                fn f() { crate::stats::wilson95(); } // crate::train in a comment\n\
                #[cfg(test)]\nmod tests { use crate::eval; }\n";
    let names = crate_imports(&code(text));
    let want: BTreeSet<String> = ["data", "hub", "model", "stats"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (a, b) in [("eval", "results"), ("results", "train"), ("train", "eval")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), BTreeSet::new());
    }
    assert_eq!(
        cycle_from("eval", &g).unwrap(),
        ["eval", "results", "train"]
    );
    g.get_mut("train").unwrap().clear();
    assert_eq!(cycle_from("eval", &g), None);
}

#[test]
fn no_cycle_among_the_top_level_modules() {
    let graph = edges();
    assert!(graph.len() >= 8, "too few modules found: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(module, &graph) {
            let mut lines = Vec::new();
            for (i, from) in cycle.iter().enumerate() {
                let to = &cycle[(i + 1) % cycle.len()];
                lines.push(format!("{from} -> {to} ({:?})", graph[from][to]));
            }
            panic!("import cycle:\n  {}", lines.join("\n  "));
        }
    }
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        if from == "cli" {
            continue;
        }
        let Some(may) = allowed.get(from.as_str()) else {
            wrong.push(format!(
                "{from}: a new top-level module: give it a place in ALLOWED (tests/layers.rs) and in src/lib.rs's list of layers"
            ));
            continue;
        };
        for (to, files) in tos {
            if !may.contains(&to.as_str()) && !UTILITIES.contains(&to.as_str()) {
                wrong.push(format!("{from} imports {to} in {files:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n  {}",
        wrong.join("\n  ")
    );
}
