//! Finding the line of a key in the config text, so that errors found after
//! parsing (a dangling reference, a cost out of range) still name a line.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug)]
pub enum Seg {
    Key(&'static str),
    Name(String),
    Idx(usize),
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The bare key written at the start of a line (`key = value`), if any.
/// The table header (`[server]`, `[[virtual_server]]`) above `line`.
pub fn section_of_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().take(line).collect();
    lines.iter().rev().map(|l| l.trim()).find(|l| l.starts_with('[')).map(|l| match l.find(']') {
        Some(i) if l.starts_with("[[") => l[..(i + 2).min(l.len())].to_string(),
        Some(i) => l[..=i].to_string(),
        None => l.to_string(),
    })
}

pub fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
        .then(|| k.to_string())
}

/// The line where the value at `path` is written; the deepest part of the
/// path that exists, so a missing key still points at its table.
pub fn line_of_path(text: &str, path: &[Seg]) -> Option<usize> {
    let table = DeTable::parse(text).ok()?;
    let span = table.span();
    let root = Spanned::new(span, DeValue::Table(table.into_inner()));
    let mut cur = &root;
    let mut best = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => cur.get_ref().get(*k),
            Seg::Idx(i) => cur.get_ref().get(*i),
            Seg::Name(k) => cur.get_ref().get(k.as_str()),
        };
        match next {
            Some(n) => {
                cur = n;
                best = Some(n.span().start);
            }
            None => break,
        }
    }
    best.map(|o| line_of(text, o))
}
