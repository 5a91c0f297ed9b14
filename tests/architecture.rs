//! The layer table in the `//!` docs of src/lib.rs, enforced: every
//! `crate::X` (in `use` lines, `use crate::{..}` groups and inline paths) and
//! every `super::` chain that climbs out of a file's top-level module is an
//! import of module X, and X must be in the importing module's row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The table from src/lib.rs: module -> what it may import.
fn layer_table() -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs is readable");
    let mut table = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | `") else { continue };
        let (module, rest) = row.split_once('`').expect("a table row names its module in backticks");
        let allowed = rest.trim().trim_start_matches('|').trim_end_matches('|');
        let allowed = allowed.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        table.insert(module.to_string(), allowed);
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A line without its `//` comment (a `//` inside a string literal stays).
fn code_of(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The names a path continues with after `crate::` or `super::`: one name,
/// or the first name of each item of a `{..}` group.
fn heads(rest: &str) -> Vec<&str> {
    let Some(group) = rest.strip_prefix('{') else { return vec![ident(rest)] };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                out.push(ident(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    out
}

/// Every top-level module that `code` (the text of the file whose module
/// path is `module_path`, e.g. `["queue", "scheduler"]`) refers to, with
/// its line number and the line itself.
fn references(module_path: &[String], code: &str, modules: &BTreeSet<String>) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (n, raw) in code.lines().enumerate() {
        let line = code_of(raw);
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut push = |name: &str| {
            if modules.contains(name) {
                out.push((n + 1, name.to_string(), raw.trim().to_string()));
            }
        };
        for (i, _) in line.match_indices("crate::") {
            if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            heads(&line[i + "crate::".len()..]).into_iter().for_each(&mut push);
        }
        let mut i = 0;
        while let Some(at) = line[i..].find("super::") {
            let start = i + at;
            let mut end = start;
            let mut climbs = 0;
            while line[end..].starts_with("super::") {
                end += "super::".len();
                climbs += 1;
            }
            i = end;
            if line[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // climbing out of every level of the file's module reaches the crate root
            if climbs >= module_path.len() {
                heads(&line[end..]).into_iter().for_each(&mut push);
            }
        }
    }
    out
}

fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

#[test]
fn no_module_imports_one_its_layer_row_does_not_allow() {
    let table = layer_table();
    let modules: BTreeSet<String> = table.keys().cloned().collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root().join("src")).unwrap();
        let shown = format!("src/{}", rel.display());
        if shown == "src/lib.rs" || shown == "src/main.rs" {
            continue; // the crate root declares the modules; main uses the library as `postern::`
        }
        let path = module_path(rel);
        let top = &path[0];
        let Some(allowed) = table.get(top) else {
            failures.push(format!("{shown}: module `{top}` has no row in the layer table of src/lib.rs"));
            continue;
        };
        let code = std::fs::read_to_string(file).unwrap();
        for (line, imported, text) in references(&path, &code, &modules) {
            if &imported == top || allowed.contains(&imported) {
                continue;
            }
            failures.push(format!(
                "{shown}:{line}: `{top}` may not import `{imported}` (layer table in src/lib.rs): {text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{} layer violations:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_layer_table_names_every_module_and_only_modules() {
    let table = layer_table();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';').to_string()).collect();
    let rows: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(rows, declared, "every `pub mod` of src/lib.rs has exactly one row in its layer table");
    for (module, allowed) in &table {
        for a in allowed {
            assert!(declared.contains(a), "the row of `{module}` names `{a}`, which is no module");
        }
    }
}

/// The scanner itself: what it must see, so that the test above cannot
/// pass by reading nothing.
#[test]
fn the_scanner_sees_use_groups_inline_paths_and_climbing_super() {
    let modules: BTreeSet<String> = ["queue", "control", "smtp", "util", "server"].map(String::from).into();
    let path: Vec<String> = ["queue", "scheduler"].map(String::from).into();
    let code = "use crate::control::ops;\n\
                use crate::{util::now, smtp::{policy, x}};\n\
                // use crate::server::Context;\n\
                let a = crate::server::go(); // crate::util\n\
                use super::QueueId;\n\
                use super::super::smtp::thing;\n\
                let s = \"crate://not-a-path\";\n\
                mycrate::control::x();\n";
    let got: Vec<(usize, String)> = references(&path, code, &modules).into_iter().map(|(n, m, _)| (n, m)).collect();
    let want: Vec<(usize, String)> =
        [(1, "control"), (2, "util"), (2, "smtp"), (4, "server"), (6, "smtp")].map(|(n, m)| (n, m.to_string())).into();
    assert_eq!(got, want);
}
