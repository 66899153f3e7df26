//! A migration file: its statements, where each starts, and whether it may
//! run inside a transaction block.
//!
//! Statements run the way psql runs a file: each on its own (autocommit)
//! unless the file opens a block with BEGIN. Statements PostgreSQL refuses
//! inside a block (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …) are fine on
//! their own; inside the file's own BEGIN … COMMIT they are an error,
//! reported before anything runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One statement of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatement {
    /// Line of the file the statement starts on, from 1.
    pub line: usize,
    /// The statement, without its terminating semicolon.
    pub sql: String,
    /// What it is, for how it must run.
    pub kind: StatementKind,
}

/// How a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// Any statement that may run in or out of a transaction block.
    Transactional,
    /// One PostgreSQL refuses inside a transaction block.
    OutsideTransaction,
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT / END / ROLLBACK / ABORT.
    End,
}

/// A migration, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Where it came from: a file path, or `sql/<workload>/<file>` for a
    /// workload's own.
    pub source: String,
    /// Its statements in order.
    pub statements: Vec<MigrationStatement>,
}

/// Why a migration cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The file could not be read.
    #[error("cannot read migration {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no statement.
    #[error("migration {source_name} has no SQL statement")]
    Empty {
        /// The migration.
        source_name: String,
    },
    /// The file cannot run the way it is written.
    #[error("migration {source_name}, line {line}: {problem}")]
    Unrunnable {
        /// The migration.
        source_name: String,
        /// Line of the offending statement.
        line: usize,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl Migration {
    /// Reads and checks a migration file.
    pub fn from_file(path: &Path) -> Result<Migration, MigrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| MigrationError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Migration::parse(&path.display().to_string(), &text)
    }

    /// Splits and checks `text`, naming it `source` in errors.
    pub fn parse(source: &str, text: &str) -> Result<Migration, MigrationError> {
        let statements: Vec<MigrationStatement> = split_statements(text)
            .into_iter()
            .map(|(line, sql)| MigrationStatement {
                kind: classify(&sql),
                line,
                sql,
            })
            .collect();
        if statements.is_empty() {
            return Err(MigrationError::Empty {
                source_name: source.to_string(),
            });
        }
        let unrunnable = |line: usize, problem: String| MigrationError::Unrunnable {
            source_name: source.to_string(),
            line,
            problem,
        };
        let mut open_block: Option<usize> = None;
        for statement in &statements {
            match (statement.kind, open_block) {
                (StatementKind::Begin, Some(begun)) => {
                    return Err(unrunnable(
                        statement.line,
                        format!("BEGIN inside the block opened at line {begun}; close it first"),
                    ))
                }
                (StatementKind::Begin, None) => open_block = Some(statement.line),
                (StatementKind::End, _) => open_block = None,
                (StatementKind::OutsideTransaction, Some(begun)) => {
                    return Err(unrunnable(
                        statement.line,
                        format!(
                            "`{}` cannot run inside a transaction block, and the file opens one at line {begun}; \
                             move it after the COMMIT (contend runs it on its own)",
                            first_words(&statement.sql, 4)
                        ),
                    ))
                }
                _ => {}
            }
        }
        if let Some(begun) = open_block {
            return Err(unrunnable(
                begun,
                "this BEGIN is never committed; end the block with COMMIT".into(),
            ));
        }
        Ok(Migration {
            source: source.to_string(),
            statements,
        })
    }

    /// Has the server parse every statement, without running any: each is
    /// the body of a throwaway SQL function with a polymorphic argument,
    /// which PostgreSQL only runs through its raw parser, inside a
    /// transaction rolled back. A syntax error is reported with its line.
    pub async fn check_syntax(&self, client: &tokio_postgres::Client) -> Result<(), MigrationError> {
        for statement in &self.statements {
            if matches!(statement.kind, StatementKind::Begin | StatementKind::End) {
                continue;
            }
            let mut tag = "$contend_parse$".to_string();
            while statement.sql.contains(&tag) {
                tag.insert(1, 'x');
            }
            let prefix =
                format!("CREATE FUNCTION pg_temp.contend_parse_check(anyelement) RETURNS void LANGUAGE sql AS {tag}");
            let check = format!("{prefix}{}\n{tag}", statement.sql);
            let outcome = async {
                client.batch_execute("BEGIN").await?;
                let parsed = client.batch_execute(&check).await;
                client.batch_execute("ROLLBACK").await?;
                parsed
            }
            .await;
            let Err(error) = outcome else { continue };
            let Some(db_error) = error.as_db_error() else {
                return Err(MigrationError::Unrunnable {
                    source_name: self.source.clone(),
                    line: statement.line,
                    problem: format!("checking the syntax: {error}"),
                });
            };
            let line = match db_error.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(position)) => {
                    let at = (*position as usize).saturating_sub(prefix.chars().count() + 1);
                    statement.line + statement.sql.chars().take(at).filter(|&c| c == '\n').count()
                }
                _ => statement.line,
            };
            return Err(MigrationError::Unrunnable {
                source_name: self.source.clone(),
                line,
                problem: format!("{} (nothing was run)", db_error.message()),
            });
        }
        Ok(())
    }

    /// Whether any statement builds an index concurrently.
    pub fn builds_index_concurrently(&self) -> bool {
        self.statements.iter().any(|s| {
            let words = words(&s.sql, 4);
            words.first().map(String::as_str) == Some("create") && words.contains(&"concurrently".to_string())
        })
    }
}

/// The first `n` words of `sql` (comments skipped), lowercased.
fn words(sql: &str, n: usize) -> Vec<String> {
    strip_comments(sql)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_lowercase)
        .collect()
}

fn first_words(sql: &str, n: usize) -> String {
    let w = words(sql, n);
    let more = words(sql, n + 1).len() > n;
    format!("{}{}", w.join(" ").to_uppercase(), if more { " …" } else { "" })
}

fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut lines = sql.lines().peekable();
    let mut in_block = false;
    while let Some(line) = lines.next() {
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else if let Some(start) = rest.find(['-', '/']) {
                if rest[start..].starts_with("--") {
                    out.push_str(&rest[..start]);
                    break;
                } else if rest[start..].starts_with("/*") {
                    out.push_str(&rest[..start]);
                    out.push(' ');
                    rest = &rest[start + 2..];
                    in_block = true;
                } else {
                    out.push_str(&rest[..=start]);
                    rest = &rest[start + 1..];
                }
            } else {
                out.push_str(rest);
                break;
            }
        }
        if lines.peek().is_some() {
            out.push('\n');
        }
    }
    out
}

fn classify(sql: &str) -> StatementKind {
    let w = words(sql, 6);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let has = |word: &str| w.contains(&word);
    match w.as_slice() {
        ["begin", ..] | ["start", "transaction", ..] => StatementKind::Begin,
        ["commit", ..] | ["end", ..] | ["rollback", ..] | ["abort", ..] => StatementKind::End,
        ["create", ..] | ["drop", ..] | ["reindex", ..] if has("concurrently") => StatementKind::OutsideTransaction,
        ["vacuum", ..]
        | ["create", "database", ..]
        | ["drop", "database", ..]
        | ["create", "tablespace", ..]
        | ["drop", "tablespace", ..]
        | ["alter", "system", ..]
        | ["reindex", "database", ..]
        | ["reindex", "system", ..] => StatementKind::OutsideTransaction,
        ["create", "subscription", ..] | ["drop", "subscription", ..] => StatementKind::OutsideTransaction,
        _ => StatementKind::Transactional,
    }
}

/// Splits SQL text into statements at top-level semicolons, honouring
/// quotes, dollar quotes and comments; returns each with the line it starts
/// on. Comment-only pieces are dropped.
pub fn split_statements(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut line = 1;
    let mut start_line = 1;
    let mut i = 0;
    let push = |out: &mut Vec<(usize, String)>, from: usize, to: usize, from_line: usize| {
        let piece: String = chars[from..to].iter().collect();
        if strip_comments(&piece).trim().is_empty() {
            return;
        }
        // Leading blank and `--` comment lines are dropped, so the statement
        // starts on the line reported.
        let mut line = from_line;
        let mut rest = piece.as_str();
        while let Some((first, tail)) = rest.split_once('\n') {
            let t = first.trim();
            if t.is_empty() || t.starts_with("--") {
                line += 1;
                rest = tail;
            } else {
                break;
            }
        }
        out.push((line, rest.trim().to_string()));
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
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
            }
            '\'' | '"' => {
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '$' => {
                // A dollar-quote tag: $$ or $tag$ (tag: letters, digits, _; not starting with a digit).
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let is_tag = chars.get(j) == Some(&'$') && !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if !is_tag {
                    i += 1;
                    continue;
                }
                let tag: Vec<char> = chars[i..=j].to_vec();
                i = j + 1;
                while i < chars.len() {
                    if chars[i..].starts_with(&tag) {
                        i += tag.len();
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            ';' => {
                push(&mut out, start, i, start_line);
                i += 1;
                start = i;
                start_line = line;
            }
            _ => i += 1,
        }
    }
    push(&mut out, start, chars.len().min(i), start_line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_with_lines() {
        let text = "-- add the index\nCREATE INDEX CONCURRENTLY i ON t (a);\n\n/* a; b */ SELECT ';', $$x;y$$, \"q;\"\n  FROM t;\nDO $body$ BEGIN PERFORM 1; END $body$\n";
        let statements = split_statements(text);
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert_eq!(statements[0], (2, "CREATE INDEX CONCURRENTLY i ON t (a)".into()));
        assert_eq!(statements[1].0, 4);
        assert!(statements[1].1.ends_with("FROM t"));
        assert_eq!(statements[2].0, 6);
        assert!(statements[2].1.ends_with("END $body$"));
    }

    #[test]
    fn classifies_what_cannot_run_in_a_block() {
        assert_eq!(
            classify("create unique index concurrently x on t(a)"),
            StatementKind::OutsideTransaction
        );
        assert_eq!(classify("DROP INDEX CONCURRENTLY x"), StatementKind::OutsideTransaction);
        assert_eq!(classify("-- c\nVACUUM (ANALYZE) t"), StatementKind::OutsideTransaction);
        assert_eq!(
            classify("REINDEX INDEX CONCURRENTLY x"),
            StatementKind::OutsideTransaction
        );
        assert_eq!(classify("CREATE INDEX x ON t (a)"), StatementKind::Transactional);
        assert_eq!(classify("begin isolation level serializable"), StatementKind::Begin);
        assert_eq!(classify("END"), StatementKind::End);
    }

    #[test]
    fn refuses_a_concurrent_build_inside_the_files_own_block() {
        let err = Migration::parse(
            "m.sql",
            "BEGIN;\nALTER TABLE t ADD c int;\nCREATE INDEX CONCURRENTLY i ON t (c);\nCOMMIT;",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("CREATE INDEX CONCURRENTLY I"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = Migration::parse("m.sql", "BEGIN;\nALTER TABLE t ADD c int;")
            .unwrap_err()
            .to_string();
        assert!(err.contains("never committed"), "{err}");
        let err = Migration::parse("m.sql", "-- nothing\n").unwrap_err().to_string();
        assert!(err.contains("no SQL statement"), "{err}");
        let ok = Migration::parse(
            "m.sql",
            "BEGIN;\nALTER TABLE t ADD c int;\nCOMMIT;\nCREATE INDEX CONCURRENTLY i ON t (c);",
        )
        .unwrap();
        assert_eq!(ok.statements.len(), 4);
        assert!(ok.builds_index_concurrently());
    }
}
