//! Reading Rust source into references between the crate's modules, for
//! the checks in layers.rs: every `use` (grouped over several lines
//! too), every inline `crate::`, `super::` and `self::` path, made absolute
//! against the module the code is in, with its line. A token scanner, not a
//! Rust parser: it knows comments, literals, use trees, `mod` items and
//! `#[cfg(test)]` modules, which is all an import graph needs.

/// A module's path inside the crate: empty for the root (src/lib.rs).
pub type ModPath = Vec<String>;

/// One reference from code in `from` to the crate path `path` (already made
/// absolute: `crate::`, `super::` and `self::` resolved), where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub from: ModPath,
    pub path: Vec<String>,
    pub line: usize,
    /// The path as written, for messages: `crate::sweep::cell_key`.
    pub written: String,
}

/// What one source file holds: the modules it declares and the references
/// its code makes.
#[derive(Debug, Default)]
pub struct FileScan {
    /// `mod name;` declarations of the file's own module: (name, line).
    pub file_mods: Vec<(String, usize)>,
    /// Inline `mod name { … }` modules (test modules excluded), absolute.
    pub inline_mods: Vec<ModPath>,
    pub references: Vec<Reference>,
}

/// A token of code: all a use tree or a path is made of.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The tokens of Rust source with their 1-based lines, without comments
/// (`//`, `///`, `//!`, nested `/* */`), string, raw string, byte string and
/// char literals: a URL's `//` in a string is not a comment, and a path in a
/// doc comment or an error message is not an import.
fn lex(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{1F600}'. The
                // escaped char is skipped first, since it may be a quote.
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label: its name lexes as an identifier,
                // which names no module.
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '"' | '#'))) {
                // A raw string: r"…", r#"…"#, no escapes inside.
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1;
                loop {
                    if i >= chars.len() {
                        break;
                    }
                    if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            } else if word == "r" && at(i) == '#' {
                // A raw identifier, r#type: the `#` is skipped, the name
                // lexes next.
                i += 1;
            } else {
                // b"…" and b'…' leave a stray `b`, harmless.
                tokens.push((Tok::Ident(word), line));
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Tok::PathSep, line));
            i += 2;
        } else {
            tokens.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

fn is_ident(tokens: &[(Tok, usize)], i: usize, word: &str) -> bool {
    matches!(tokens.get(i), Some((Tok::Ident(w), _)) if w == word)
}

fn is_punct(tokens: &[(Tok, usize)], i: usize, c: char) -> bool {
    matches!(tokens.get(i), Some((Tok::Punct(p), _)) if *p == c)
}

/// Index after the bracketed group opening at `i` (`open` at `tokens[i]`).
fn skip_group(tokens: &[(Tok, usize)], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < tokens.len() {
        if is_punct(tokens, i, open) {
            depth += 1;
        } else if is_punct(tokens, i, close) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// Whether the attribute starting at `i` (`#` `[` …) is `#[cfg(test)]`.
fn is_cfg_test(tokens: &[(Tok, usize)], i: usize) -> bool {
    is_punct(tokens, i, '#')
        && is_punct(tokens, i + 1, '[')
        && is_ident(tokens, i + 2, "cfg")
        && is_punct(tokens, i + 3, '(')
        && is_ident(tokens, i + 4, "test")
        && is_punct(tokens, i + 5, ')')
        && is_punct(tokens, i + 6, ']')
}

/// Skips visibility (`pub`, `pub(crate)`, `pub(in a::b)`) at `i`.
fn skip_visibility(tokens: &[(Tok, usize)], mut i: usize) -> usize {
    if is_ident(tokens, i, "pub") {
        i += 1;
        if is_punct(tokens, i, '(') {
            i = skip_group(tokens, i, '(', ')');
        }
    }
    i
}

/// Makes a path as written absolute against the module `scope`: `crate::a`
/// → `a`, `self::a` → `scope::a`, `super::a` → `parent(scope)::a`. A path
/// with another first segment gives None: an extern crate, a name in scope,
/// or a child module of `scope`, and an edge to a descendant is one no check
/// counts.
fn absolute(scope: &[String], segments: &[String]) -> Option<Vec<String>> {
    let (first, mut rest) = segments.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => scope.to_vec(),
        "super" => {
            let mut base = scope.to_vec();
            base.pop()?;
            while let Some(("super", after)) = rest.split_first().map(|(s, after)| (s.as_str(), after)) {
                base.pop()?;
                rest = after;
            }
            base
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Parses a use tree at `i` under `prefix`; pushes each leaf path (with the
/// line of its last segment) and returns the index after the tree.
fn use_tree(tokens: &[(Tok, usize)], mut i: usize, prefix: &[String], leaves: &mut Vec<(Vec<String>, usize)>) -> usize {
    let mut path = prefix.to_vec();
    let mut line = tokens.get(i).map_or(0, |t| t.1);
    if matches!(tokens.get(i), Some((Tok::PathSep, _))) {
        // `use ::std::…`: an extern crate.
        i += 1;
        path.push("::".to_string());
    }
    loop {
        match tokens.get(i) {
            Some((Tok::Ident(word), l)) => {
                // `use a::{self, B}`: `self` is the prefix itself.
                if word != "self" || path.is_empty() {
                    path.push(word.clone());
                }
                line = *l;
                i += 1;
                if is_ident(tokens, i, "as") {
                    i += 2;
                }
                if matches!(tokens.get(i), Some((Tok::PathSep, _))) {
                    i += 1;
                    continue;
                }
                leaves.push((path, line));
                return i;
            }
            Some((Tok::Punct('*'), l)) => {
                leaves.push((path, *l));
                return i + 1;
            }
            Some((Tok::Punct('{'), _)) => {
                i += 1;
                while i < tokens.len() && !is_punct(tokens, i, '}') {
                    i = use_tree(tokens, i, &path, leaves);
                    if is_punct(tokens, i, ',') {
                        i += 1;
                    } else if !is_punct(tokens, i, '}') {
                        // Not a use tree after all: stop at what we know.
                        return i;
                    }
                }
                return i + 1;
            }
            _ => {
                if !path.is_empty() {
                    leaves.push((path, line));
                }
                return i;
            }
        }
    }
}

/// Scans the source of the module `module`: its `mod` declarations and every
/// reference to a crate path. `#[cfg(test)]` modules are left out, inline or
/// in a file: a test module may import test helpers from anywhere, and what
/// it imports is not a dependency of the library's code.
pub fn scan_source(source: &str, module: &[String]) -> FileScan {
    let tokens = lex(source);
    let mut scan = FileScan::default();
    // Inline modules open inside this file: (path, brace depth inside them).
    let mut scopes: Vec<(ModPath, usize)> = vec![(module.to_vec(), 0)];
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope = scopes.last().unwrap().0.clone();
        if is_cfg_test(&tokens, i) {
            let mut j = i + 7;
            while is_punct(&tokens, j, '#') && is_punct(&tokens, j + 1, '[') {
                j = skip_group(&tokens, j + 1, '[', ']');
            }
            j = skip_visibility(&tokens, j);
            if is_ident(&tokens, j, "mod") {
                j += 2;
                i = if is_punct(&tokens, j, '{') {
                    skip_group(&tokens, j, '{', '}')
                } else {
                    j + 1
                };
                continue;
            }
            i += 7;
            continue;
        }
        match &tokens[i] {
            (Tok::Ident(word), line) if word == "mod" => {
                if let Some((Tok::Ident(name), _)) = tokens.get(i + 1) {
                    if is_punct(&tokens, i + 2, ';') && scopes.len() == 1 {
                        scan.file_mods.push((name.clone(), *line));
                    } else if is_punct(&tokens, i + 2, '{') {
                        let mut inline = scope.clone();
                        inline.push(name.clone());
                        scan.inline_mods.push(inline.clone());
                        depth += 1;
                        scopes.push((inline, depth));
                        i += 3;
                        continue;
                    }
                }
                i += 1;
            }
            (Tok::Ident(word), _) if word == "use" => {
                let mut leaves = Vec::new();
                i = use_tree(&tokens, i + 1, &[], &mut leaves);
                for (written, line) in leaves {
                    if let Some(path) = absolute(&scope, &written) {
                        scan.references.push(Reference {
                            from: scope.clone(),
                            path,
                            line,
                            written: written.join("::"),
                        });
                    }
                }
            }
            (Tok::Ident(word), line) if matches!(word.as_str(), "crate" | "super" | "self") => {
                let mut written = vec![word.clone()];
                let mut j = i + 1;
                while matches!(tokens.get(j), Some((Tok::PathSep, _))) {
                    match tokens.get(j + 1) {
                        Some((Tok::Ident(segment), _)) => {
                            written.push(segment.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                // `pub(crate)`, `self.field`, a bare `self`: no path.
                if written.len() > 1 {
                    if let Some(path) = absolute(&scope, &written) {
                        scan.references.push(Reference {
                            from: scope.clone(),
                            path,
                            line: *line,
                            written: written.join("::"),
                        });
                    }
                }
                i = j;
            }
            (Tok::Punct('{'), _) => {
                depth += 1;
                i += 1;
            }
            (Tok::Punct('}'), _) => {
                if scopes.len() > 1 && scopes.last().unwrap().1 == depth {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    scan
}

// The scanner's own test.

fn paths(scan: &FileScan) -> Vec<(String, usize)> {
    scan.references.iter().map(|r| (r.path.join("::"), r.line)).collect()
}

#[test]
fn the_scanner_reads_grouped_uses_relative_paths_and_skips_comments_strings_and_tests() {
    let source = r##"//! A doc comment naming crate::doc::only is no import.
use crate::{
    a::B,
    c::{self, d, e::F as G},
};
use super::sibling::Thing;
use std::collections::BTreeMap;
// crate::line::comment
/* crate::block /* nested */ crate::comment */
fn f<'a>(x: &'a str) -> char {
    let url = "postgres://crate::in_string \" crate::still_in_it";
    let raw = r#"crate::in_raw"#;
    crate::inline::path(self::child::g(), super::super::up::h());
    '\''
}
pub(crate) struct S;
#[cfg(test)]
mod tests {
    use crate::test_only::Helper;
}
mod inner {
    use super::Outer;
    fn g() { self::deep::k(); }
}
"##;
    let scan = scan_source(source, &["x".to_string(), "y".to_string()]);
    assert_eq!(
        paths(&scan),
        vec![
            ("a::B".to_string(), 3),
            ("c".to_string(), 4),
            ("c::d".to_string(), 4),
            ("c::e::F".to_string(), 4),
            ("x::sibling::Thing".to_string(), 6),
            ("inline::path".to_string(), 13),
            ("x::y::child::g".to_string(), 13),
            ("up::h".to_string(), 13),
            ("x::y::Outer".to_string(), 22),
            ("x::y::inner::deep::k".to_string(), 23),
        ]
    );
    assert_eq!(
        scan.inline_mods,
        vec![vec!["x".to_string(), "y".to_string(), "inner".to_string()]]
    );
}
