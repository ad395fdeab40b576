//! The layering rule, checked on the source: every `crate::X` path in module M (in code and in
//! `use` groups, doc links included) must name a module of a lower layer than M's; the
//! protocol layer must not use tokio. A new module must be given its layer here.

use std::collections::BTreeSet;
use std::path::Path;

/// Layer of each top-level module: a module may use only modules of a lower layer.
const LAYERS: &[(&str, u8)] = &[
    ("util", 0),
    ("bencode", 1),
    ("metainfo", 2),
    ("wire", 2),
    ("announce", 2),
    ("policy", 3),
    ("peer", 4),
    ("tracker", 5),
    ("vod", 5),
    ("netem", 5),
    ("orchestrator", 6),
    ("cli", 7),
];

/// Modules that must stay free of I/O runtimes: bytes in, values out.
const PURE: &[&str] = &["bencode", "metainfo", "wire", "announce"];

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// The top-level modules named by `crate::` paths in `src`, `use crate::{a, b::c}` groups
/// included.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.extend(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.extend(ident(rest));
        }
    }
    out
}

fn ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_string())
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
