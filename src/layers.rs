//! The layering rule, checked on the source (`make lint` runs these tests):
//!
//! * between modules: every `crate::X` path in module M (in code and in `use` groups, doc
//!   links included) must name a module of a lower layer than M's; the protocol layer must not
//!   use tokio. A new module must be given its layer here;
//! * between files: the files of `src/` form no circle. File A uses file B when A's code (its
//!   tests and comments aside) names an item of B by a `crate::`, `super::` or `self::` path, or,
//!   in a `mod.rs`, by a child module's name. A `mod.rs` declaring its children and re-exporting
//!   their items (`pub use`) does not use them: that is the module's face, not its code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module: a module may use only modules of a lower layer.
const LAYERS: &[(&str, u8)] = &[
    ("util", 0),
    ("sys", 1),
    ("bencode", 1),
    ("metainfo", 2),
    ("wire", 2),
    ("announce", 2),
    ("policy", 3),
    ("peer", 4),
    ("tracker", 5),
    ("vod", 5),
    ("netem", 5),
    ("lab", 6),
    ("experiment", 7),
    ("cli", 8),
];

/// Modules that must stay free of I/O runtimes: bytes in, values out.
const PURE: &[&str] = &["bencode", "metainfo", "wire", "announce"];

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// The top-level modules named by `crate::` paths in `src`, `use crate::{a, b::c}` groups
/// included (read by [`use_tree`], as the file graph reads them).
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut found = Vec::new();
        use_tree(rest, &mut Vec::new(), &mut found);
        out.extend(found.into_iter().filter_map(|p| p.into_iter().next()));
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn dependencies_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue; // lib.rs, layers.rs
        }
        if name == "bin" {
            continue; // the binaries sit on top of everything
        }
        let Some(mine) = layer(&name) else {
            wrong.push(format!("src/{name}: no layer in src/layers.rs"));
            continue;
        };
        seen.insert(name.clone());
        let mut files = Vec::new();
        sources(&path, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for r in crate_refs(&text) {
                match layer(&r) {
                    Some(theirs) if theirs < mine || r == name => {}
                    Some(_) => wrong.push(format!("{}: uses crate::{r}", f.display())),
                    None => wrong.push(format!("{}: crate::{r} has no layer", f.display())),
                }
            }
            if PURE.contains(&name.as_str()) && text.contains("tokio") {
                wrong.push(format!("{}: protocol code uses tokio", f.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "layers broken:\n{}", wrong.join("\n"));
    assert_eq!(
        seen.len(),
        LAYERS.len(),
        "every layer names a module: {seen:?}"
    );
}

#[test]
fn references_are_found_in_paths_and_groups() {
    let src = "use crate::{a::b, c, d::{e, f}};\nfn x() { crate::g::h(); }\n// [`crate::i`]\n";
    let got: Vec<String> = crate_refs(src).into_iter().collect();
    assert_eq!(got, ["a", "c", "d", "g", "i"]);
}

/// A file's module path: `src/lab/web/page.rs` is `lab::web::page`, `src/lab/mod.rs` is `lab`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The text the file graph reads: comments, `#[cfg(test)]` modules and (in a `mod.rs`) the
/// `pub use` re-exports and `mod` declarations left out.
fn code_of(text: &str, is_mod_rs: bool) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut in_reexport = false;
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let test_mod = |n: &&str| {
            let n = n.trim_start();
            n.starts_with("mod ") || n.starts_with("pub") && n.contains(" mod ")
        };
        if t == "#[cfg(test)]" && lines.peek().is_some_and(test_mod) {
            // A test module: skip to its closing brace at the same indent.
            let indent = &line[..line.len() - t.len()];
            let close = format!("{indent}}}");
            let header = lines.next().unwrap_or_default();
            if !header.trim_end().ends_with(';') {
                for l in lines.by_ref() {
                    if l == close {
                        break;
                    }
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        if is_mod_rs {
            let reexport =
                t.starts_with("pub use ") || t.starts_with("pub(") && t.contains(") use ");
            if reexport || in_reexport {
                in_reexport = !t.trim_end().ends_with(';');
                continue;
            }
            if t.starts_with("mod ")
                || t.starts_with("pub mod ")
                || t.starts_with("pub(crate) mod ")
            {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The paths of one use tree starting at `s` (after `crate::`, `super::`, `self::` or a child
/// module's name): `a::b::{c, d::e}` gives `[a, b, c]` and `[a, b, d, e]`.
fn use_tree(s: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut i = 0;
    let bytes = s.as_bytes();
    let mut pushed = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            i += 1;
            loop {
                // A group's member; a character the tree does not know is stepped over.
                i += use_tree(&s[i..], prefix, out).max(1);
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    i += 1;
                    break;
                }
            }
            break;
        }
        let end = s[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(s.len(), |e| i + e);
        if end == i {
            // `*`, or the end of the path.
            out.push(prefix.clone());
            if s[i..].starts_with('*') {
                i += 1;
            }
            break;
        }
        prefix.push(s[i..end].to_string());
        pushed += 1;
        i = end;
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            out.push(prefix.clone());
            // `as name`, the rest of an expression: not part of the path.
            break;
        }
    }
    prefix.truncate(prefix.len() - pushed);
    i
}

/// The absolute module paths (items included) that `code` names, for a file of module `me`
/// (`mod_rs`: it is a directory's `mod.rs`, whose children are `children`).
fn named_paths(
    code: &str,
    me: &[String],
    mod_rs: bool,
    children: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    // `self` is the file's module, `super` its parent (for `lab/web/page.rs`, `lab::web`).
    let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if !boundary || !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            i += 1;
            continue;
        }
        let end = code[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(code.len(), |e| i + e);
        let word = &code[i..end];
        if !code[end..].starts_with("::") {
            i = end;
            continue;
        }
        let mut base: Option<Vec<String>> = match word {
            "crate" => Some(Vec::new()),
            "self" => Some(me.to_vec()),
            "super" => Some(parent.clone()),
            w if mod_rs && children.contains(w) => {
                let mut b = me.to_vec();
                b.push(w.to_string());
                Some(b)
            }
            _ => None,
        };
        let mut j = end + 2;
        // `super::super::`
        while let Some(b) = base.as_mut() {
            if code[j..].starts_with("super::") {
                b.pop();
                j += "super::".len();
            } else {
                break;
            }
        }
        if let Some(mut b) = base {
            let mut found = Vec::new();
            j += use_tree(&code[j..], &mut b, &mut found);
            out.extend(found);
        }
        i = j.max(end);
    }
    out
}

/// Every file of `src/` but the crate root, the binaries and this check.
fn lib_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.retain(|f| {
        let rel = f.strip_prefix(src).unwrap();
        !(rel.starts_with("bin") || rel == Path::new("lib.rs") || rel == Path::new("layers.rs"))
    });
    files.sort();
    files
}

/// File A → the files it uses.
fn file_graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files = lib_files(src);
    let by_module: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        let mod_rs = f.file_name().is_some_and(|n| n == "mod.rs");
        let children: BTreeSet<String> = by_module
            .keys()
            .filter(|m| m.len() == me.len() + 1 && m.starts_with(&me))
            .map(|m| m[me.len()].clone())
            .collect();
        let text = std::fs::read_to_string(f).unwrap();
        let code = code_of(&text, mod_rs);
        let mut uses = BTreeSet::new();
        for path in named_paths(&code, &me, mod_rs, &children) {
            // The deepest file whose module the path starts with.
            let target = (1..=path.len())
                .rev()
                .find_map(|k| by_module.get(&path[..k]));
            if let Some(t) = target {
                if t != f {
                    uses.insert(t.clone());
                }
            }
        }
        graph.insert(f.clone(), uses);
    }
    graph
}

/// A circle of the graph, if it has one (depth-first, files in order).
fn find_circle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        marks: &mut BTreeMap<PathBuf, Mark>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|s| s == n).unwrap();
                let mut circle = stack[at..].to_vec();
                circle.push(n.clone());
                return Some(circle);
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn files_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = file_graph(&src);
    if let Some(circle) = find_circle(&graph) {
        let names: Vec<String> = circle
            .iter()
            .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
            .collect();
        panic!("files use each other in a circle: {}", names.join(" -> "));
    }
}

#[test]
fn the_file_graph_sees_each_kind_of_reference() {
    let kids: BTreeSet<String> = ["world".to_string()].into();
    let me = vec!["lab".to_string()];
    let code = "use crate::{a::b, c::{d, e}};\nfn f() { super::x::y(); world::World::new(); }\n";
    let got = named_paths(code, &me, true, &kids);
    let want: Vec<Vec<&str>> = vec![
        vec!["a", "b"],
        vec!["c", "d"],
        vec!["c", "e"],
        vec!["x", "y"],
        vec!["lab", "world", "World", "new"],
    ];
    assert_eq!(got, want);
    // A leaf file's `super` is its directory's module, `self` its own.
    let leaf = vec!["lab".to_string(), "web".to_string(), "page".to_string()];
    let got = named_paths(
        "use super::api::Phase; use self::inner::X;",
        &leaf,
        false,
        &BTreeSet::new(),
    );
    assert_eq!(
        got,
        vec![
            vec!["lab", "web", "api", "Phase"],
            vec!["lab", "web", "page", "inner", "X"]
        ]
    );
    // Re-exports, declarations, comments and test modules are not uses.
    let text = "pub mod a;\npub use a::X;\n// crate::b::Y\n#[cfg(test)]\nmod tests {\n    use crate::c::Z;\n}\nfn g() { crate::d::W; }\n";
    let code = code_of(text, true);
    assert_eq!(named_paths(&code, &me, true, &kids), vec![vec!["d", "W"]]);
    let mut g = BTreeMap::new();
    let (a, b) = (PathBuf::from("a.rs"), PathBuf::from("b.rs"));
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::new());
    assert!(find_circle(&g).is_none());
    g.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(find_circle(&g), Some(vec![a.clone(), b, a]));
}
