//! The library's module graph, read from the source files: no import cycle
//! among the top-level modules or among the children of any folder, each
//! layer imports only the layers before it, and lib.rs's `//!` layout map
//! names every top-level module. A cycle or a backward import is how a crate
//! loses the shape its folders claim (issue 15: run, failure, sweep, runfile,
//! recommend and migrate all imported one another, four of those edges inline
//! `crate::x::` paths that no `use` header showed), so this reads every
//! `use`, every inline `crate::`, `super::` and `self::` path, and names the
//! file and line of each edge it reports. Pure file reading: no server, no
//! compiler, so it runs in milliseconds and says why in plain words.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

mod scan;

use scan::{scan_source, FileScan, ModPath};

/// The layers, in the order data flows through them: a layer may import only
/// the layers before it in this list. The one place to edit when the layout
/// changes. Top-level modules not listed here (the old flat tree's, or a
/// small leaf such as a password helper) are checked for cycles only.
const LAYERS: &[&str] = &[
    "provision",
    "network",
    "client",
    "measure",
    "workload",
    "driver",
    "record",
    // analysis before results: run.json (results) carries the
    // recommendations beside the records.
    "analysis",
    "results",
    "render",
    "exec",
];

/// Imports the order above allows but the layout forbids, as (importer,
/// imported): analysis is pure functions of records, so it never reads a
/// results directory.
const FORBIDDEN_IMPORTS: &[(&str, &str)] = &[("analysis", "results"), ("analysis", "exec")];

/// Layers no module imports, listed or not: what runs in order sits on top,
/// and only the binary (and lib.rs's re-exports) reach into it.
const IMPORTED_BY_NONE: &[&str] = &["exec"];

/// One resolved edge: code in `from` names something in module `to`.
#[derive(Debug, Clone)]
struct Edge {
    from: ModPath,
    to: ModPath,
    file: String,
    line: usize,
    written: String,
}

impl Edge {
    fn location(&self) -> String {
        format!("{}:{} {}", self.file, self.line, self.written)
    }
}

// ---------------------------------------------------------------------------
// The crate: files, modules, edges.

/// The library as read from src/: every edge between two different modules
/// with where it is written, and lib.rs's own declarations and text.
struct Crate {
    edges: Vec<Edge>,
    /// lib.rs's `mod` declarations: (name, line).
    top_level: Vec<(String, usize)>,
    lib_source: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn display(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Reads the library by following `mod` declarations from src/lib.rs, as
/// rustc does, rather than listing src/: the binary's files (src/main.rs,
/// src/bin/, and in the flat tree the *_cmd.rs files beside library modules)
/// are not reached, since their `crate::` means the binary.
fn read_crate() -> Crate {
    let lib = src_dir().join("lib.rs");
    let lib_source = std::fs::read_to_string(&lib).unwrap();
    let mut modules = BTreeSet::new();
    let mut scans: Vec<(String, FileScan)> = Vec::new();
    let mut top_level = Vec::new();
    // (module, its file, the folder its children live in)
    let mut queue = vec![(Vec::<String>::new(), lib.clone(), src_dir())];
    while let Some((module, file, children_dir)) = queue.pop() {
        let source = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let scan = scan_source(&source, &module);
        if module.is_empty() {
            top_level = scan.file_mods.clone();
        }
        for (name, line) in &scan.file_mods {
            let as_file = children_dir.join(format!("{name}.rs"));
            let as_dir = children_dir.join(name).join("mod.rs");
            let mut child = module.clone();
            child.push(name.clone());
            if as_file.is_file() {
                queue.push((child, as_file, children_dir.join(name)));
            } else if as_dir.is_file() {
                queue.push((child, as_dir, children_dir.join(name)));
            } else {
                panic!(
                    "{}:{line}: `mod {name};` has neither {} nor {}",
                    display(&file),
                    display(&as_file),
                    display(&as_dir)
                );
            }
        }
        modules.extend(scan.inline_mods.iter().cloned());
        modules.insert(module);
        scans.push((display(&file), scan));
    }
    let mut edges = Vec::new();
    for (file, scan) in scans {
        for reference in scan.references {
            // The longest prefix that is a module: crate::run::RunError is
            // in run; crate::provision::local::start in provision::local.
            let to = (0..=reference.path.len())
                .rev()
                .map(|n| reference.path[..n].to_vec())
                .find(|prefix| modules.contains(prefix))
                .unwrap_or_default();
            if to != reference.from {
                edges.push(Edge {
                    from: reference.from,
                    to,
                    file: file.clone(),
                    line: reference.line,
                    written: reference.written,
                });
            }
        }
    }
    edges.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Crate {
        edges,
        top_level,
        lib_source,
    }
}

/// An edge lifted to the folder where it crosses between siblings: for
/// a::b::x → a::c::y, (a, b, c). None when one end contains the other (a
/// module and its own parent's or child's items), which is no sibling edge.
fn sibling_edge(edge: &Edge) -> Option<(ModPath, String, String)> {
    let common = edge.from.iter().zip(&edge.to).take_while(|(a, b)| a == b).count();
    if common == edge.from.len() || common == edge.to.len() {
        return None;
    }
    Some((
        edge.from[..common].to_vec(),
        edge.from[common].clone(),
        edge.to[common].clone(),
    ))
}

/// Edges between siblings, by folder: folder → (from, to) → edges.
type SiblingGraph<'a> = BTreeMap<ModPath, BTreeMap<(String, String), Vec<&'a Edge>>>;

/// Strongly connected components with more than one member (Tarjan's).
fn cycles(graph: &BTreeMap<(String, String), Vec<&Edge>>) -> Vec<Vec<String>> {
    let mut nodes: BTreeSet<&String> = BTreeSet::new();
    for (from, to) in graph.keys() {
        nodes.insert(from);
        nodes.insert(to);
    }
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let index_of = |name: &String| nodes.iter().position(|n| *n == name).unwrap();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (from, to) in graph.keys() {
        next[index_of(from)].push(index_of(to));
    }
    struct Tarjan {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(t: &mut Tarjan, next: &[Vec<usize>], v: usize) {
        t.index[v] = Some(t.counter);
        t.low[v] = t.counter;
        t.counter += 1;
        t.stack.push(v);
        t.on_stack[v] = true;
        for &w in &next[v] {
            match t.index[w] {
                None => {
                    visit(t, next, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(index) if t.on_stack[w] => t.low[v] = t.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut component = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                t.found.push(component);
            }
        }
    }
    let mut t = Tarjan {
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        counter: 0,
        found: Vec::new(),
    };
    for v in 0..nodes.len() {
        if t.index[v].is_none() {
            visit(&mut t, &next, v);
        }
    }
    let mut found: Vec<Vec<String>> = t
        .found
        .into_iter()
        .map(|c| {
            let mut names: Vec<String> = c.into_iter().map(|v| nodes[v].clone()).collect();
            names.sort();
            names
        })
        .collect();
    found.sort();
    found
}

/// The shortest cycle through the first member of a component, for a
/// message a person can follow: run → sweep → failure → run.
fn one_cycle(component: &[String], graph: &BTreeMap<(String, String), Vec<&Edge>>) -> Vec<String> {
    let start = &component[0];
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (from, to) in graph.keys() {
            if from != node || !component.contains(to) {
                continue;
            }
            if to == start {
                let mut path = vec![start.clone()];
                let mut at = node;
                while at != start {
                    path.push(at.clone());
                    at = came_from[at];
                }
                path.push(start.clone());
                path.reverse();
                return path;
            }
            if !came_from.contains_key(to) {
                came_from.insert(to, node);
                queue.push_back(to);
            }
        }
    }
    component.to_vec()
}

/// Up to three lines where an edge is written (with the first path each
/// names), and how many more.
fn locations(edges: &[&Edge]) -> String {
    let mut lines: Vec<&Edge> = Vec::new();
    for edge in edges {
        if !lines
            .iter()
            .any(|seen| seen.file == edge.file && seen.line == edge.line)
        {
            lines.push(edge);
        }
    }
    let mut text: Vec<String> = lines.iter().take(3).map(|e| e.location()).collect();
    if lines.len() > 3 {
        text.push(format!("and {} more line(s)", lines.len() - 3));
    }
    text.join(", ")
}

/// Every cycle among the top-level modules and among the children of each
/// folder, as a message naming its members, one cycle through them, and
/// every edge inside it with the lines that make it.
fn cycle_problems(edges: &[Edge]) -> Vec<String> {
    let mut graph: SiblingGraph = BTreeMap::new();
    for edge in edges {
        if let Some((folder, from, to)) = sibling_edge(edge) {
            graph
                .entry(folder)
                .or_default()
                .entry((from, to))
                .or_default()
                .push(edge);
        }
    }
    let mut problems = Vec::new();
    for (folder, edges) in &graph {
        for component in cycles(edges) {
            let among = if folder.is_empty() {
                "the top-level modules".to_string()
            } else {
                format!("the modules of {}", folder.join("::"))
            };
            let mut message = format!(
                "import cycle among {among}: {}\n  for example {}\n  every edge inside it:",
                component.join(", "),
                one_cycle(&component, edges).join(" → "),
            );
            for ((from, to), places) in edges {
                if component.contains(from) && component.contains(to) {
                    message.push_str(&format!("\n    {from} → {to}: {}", locations(places)));
                }
            }
            problems.push(message);
        }
    }
    problems
}

/// Every import between top-level modules that the layer order, the
/// forbidden pairs or the never-imported layers rule out. Only edges
/// between two listed layers are judged by the order; an unlisted module
/// is still refused an import of a never-imported layer.
fn layer_problems(edges: &[Edge]) -> Vec<String> {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut wrong: BTreeMap<(String, String, String), Vec<&Edge>> = BTreeMap::new();
    for edge in edges {
        // lib.rs's re-exports are the façade, not an import by a layer.
        let (Some(from), Some(to)) = (edge.from.first(), edge.to.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        let why = if IMPORTED_BY_NONE.contains(&to.as_str()) {
            format!("nothing imports {to}")
        } else if FORBIDDEN_IMPORTS.contains(&(from.as_str(), to.as_str())) {
            format!("{from} must not import {to}")
        } else {
            match (rank(from), rank(to)) {
                (Some(f), Some(t)) if t > f => format!("{to} is a later layer than {from}"),
                _ => continue,
            }
        };
        wrong.entry((from.clone(), to.clone(), why)).or_default().push(edge);
    }
    wrong
        .iter()
        .map(|((from, to, why), edges)| format!("{from} → {to} ({why}): {}", locations(edges)))
        .collect()
}

#[test]
fn no_import_cycle_among_top_level_modules_or_siblings() {
    let problems = cycle_problems(&read_crate().edges);
    assert!(
        problems.is_empty(),
        "{}\n\nBreak each cycle by moving what both sides need into a module they can both import.",
        problems.join("\n\n")
    );
}

#[test]
fn layers_import_only_earlier_layers() {
    let problems = layer_problems(&read_crate().edges);
    assert!(
        problems.is_empty(),
        "imports against the layer order {}:\n  {}",
        LAYERS.join(" → "),
        problems.join("\n  ")
    );
}

/// The modules lib.rs's `//!` layout map lists: the first word of each line
/// of its fenced blocks (of the whole doc when it has none), past drawing
/// characters and a `src/` prefix, as in `run        one cell: …` or
/// `src/record/   serde schemas only`. A name counts only as an entry, not
/// as a word in another entry's description, so a module cannot hide
/// behind "… formula verdicts".
fn layout_map_entries(lib_source: &str) -> BTreeSet<String> {
    let doc: Vec<&str> = lib_source
        .lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .filter_map(|l| l.strip_prefix("//!"))
        .collect();
    let mut fenced = Vec::new();
    let mut inside = false;
    for line in &doc {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            fenced.push(*line);
        }
    }
    let map = if fenced.is_empty() { doc } else { fenced };
    map.iter()
        .filter_map(|line| {
            let line = line.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '_');
            let line = line.strip_prefix("src/").unwrap_or(line);
            let word: String = line.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!word.is_empty()).then_some(word)
        })
        .collect()
}

#[test]
fn lib_layout_map_names_every_top_level_module() {
    let krate = read_crate();
    let entries = layout_map_entries(&krate.lib_source);
    let missing: Vec<String> = krate
        .top_level
        .iter()
        .filter(|(name, _)| !entries.contains(name))
        .map(|(name, line)| format!("{name} (src/lib.rs:{line})"))
        .collect();
    assert!(
        missing.is_empty(),
        "src/lib.rs declares modules its //! layout map has no line for: {}\n\
         Add to the map a line starting with each name.",
        missing.join(", ")
    );
}

// ---------------------------------------------------------------------------
// The checker's own tests.

fn edge(from: &str, to: &str, file: &str, line: usize) -> Edge {
    let path = |p: &str| p.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
    Edge {
        from: path(from),
        to: path(to),
        file: file.to_string(),
        line,
        written: format!("crate::{to}"),
    }
}

#[test]
fn an_edge_counts_between_siblings_only() {
    let lifted = |from, to| sibling_edge(&edge(from, to, "src/x.rs", 1)).map(|(p, f, t)| (p.join("::"), f, t));
    let crossing = |folder: &str, from: &str, to: &str| Some((folder.to_string(), from.to_string(), to.to_string()));
    assert_eq!(lifted("a::b::x", "a::c"), crossing("a", "b", "c"));
    assert_eq!(lifted("run", "sweep::plan"), crossing("", "run", "sweep"));
    // A child naming its parent's items, or a parent its child's: no edge.
    assert_eq!(lifted("a::b", "a"), None);
    assert_eq!(lifted("a", "a::b::c"), None);
}

#[test]
fn a_cycle_between_siblings_is_named_with_its_lines() {
    let edges = [
        edge("a::b::x", "a::c", "src/a/b/x.rs", 3),
        edge("a::c", "a::b", "src/a/c.rs", 7),
        edge("a::b", "a", "src/a/b.rs", 2),
        edge("a", "a::c", "src/a/mod.rs", 4),
        edge("run", "sweep", "src/run.rs", 9),
    ];
    let problems = cycle_problems(&edges);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        problems[0],
        "import cycle among the modules of a: b, c\n  for example b → c → b\n  every edge inside it:\n    \
         b → c: src/a/b/x.rs:3 crate::a::c\n    c → b: src/a/c.rs:7 crate::a::b"
    );
    let mut edges = edges.to_vec();
    edges.push(edge("sweep", "run", "src/sweep.rs", 5));
    assert_eq!(cycle_problems(&edges).len(), 2);
}

#[test]
fn a_layer_imports_only_earlier_layers() {
    let edges = [
        edge("driver", "provision", "src/driver.rs", 1),
        edge("provision::local", "driver", "src/provision/local.rs", 2),
        edge("analysis", "results", "src/analysis/mod.rs", 3),
        edge("secret", "exec::sweep", "src/secret.rs", 4),
        edge("secret", "record", "src/secret.rs", 5),
        edge("", "exec", "src/lib.rs", 6),
    ];
    assert_eq!(
        layer_problems(&edges),
        [
            "analysis → results (analysis must not import results): src/analysis/mod.rs:3 crate::results",
            "provision → driver (driver is a later layer than provision): src/provision/local.rs:2 crate::driver",
            "secret → exec (nothing imports exec): src/secret.rs:4 crate::exec::sweep",
        ]
    );
}

#[test]
fn the_layout_map_lists_entries_not_words_of_descriptions() {
    let lib = "//! contend.\n//!\n//! ```text\n//! run        one cell → cells.jsonl\n//!  │\n//! src/record/   schemas; the formula verdicts\n//! ```\n\npub mod run;\n";
    let entries = layout_map_entries(lib);
    assert_eq!(entries, BTreeSet::from(["run".to_string(), "record".to_string()]));
}
