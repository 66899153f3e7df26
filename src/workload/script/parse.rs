//! A pgbench script's text → a [`Program`]: `\set` and `\sleep` lines, and
//! SQL statements (possibly over several lines, ending at `;` outside quotes
//! and comments) whose `:name` variables become bind parameters `$1, $2…`
//! in order of appearance, as pgbench's `-M prepared` does.
//!
//! Everything that can be checked without a server is checked here, with the
//! file and line: unsupported or unknown meta-commands, expressions, a
//! variable read before any `\set` of it, a BEGIN left open at the end.
//! Nothing here runs anything.

use super::expr::{self, is_name_char, Expr, UnsetVariable, Value};

/// Variables pgbench sets by itself; slot 0 is `scale`.
pub const AUTOMATIC_VARIABLES: &[&str] = &["scale"];

/// Slot of the automatic `:scale` variable.
pub const SCALE_SLOT: usize = 0;

/// A script ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Commands in script order.
    pub commands: Vec<Command>,
    /// Variable names by slot (slot 0 is `scale`).
    pub variables: Vec<String>,
}

/// One command of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `\set name expression`.
    Set {
        /// Line of the command.
        line: usize,
        /// Slot of the variable set.
        slot: usize,
        /// The expression.
        expr: Expr,
    },
    /// `\sleep amount [us|ms|s]`.
    Sleep {
        /// Line of the command.
        line: usize,
        /// How many units.
        amount: SleepAmount,
        /// Microseconds per unit (1, 1,000 or 1,000,000).
        unit_us: u64,
    },
    /// A SQL statement.
    Sql {
        /// Line the statement starts on.
        line: usize,
        /// The statement with `$n` in place of each `:variable`, without its `;`.
        text: String,
        /// Slot bound to each `$n`, in order.
        params: Vec<usize>,
    },
}

/// How long a `\sleep` is, in its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepAmount {
    /// A constant.
    Constant(i64),
    /// A variable's value (doubles truncated).
    Variable(usize),
}

/// What is wrong on one line of a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A pgbench meta-command contend does not run.
    #[error("\\{command} is not supported; contend supports \\set and \\sleep")]
    Unsupported {
        /// The meta-command, without its backslash.
        command: String,
    },
    /// Not a pgbench meta-command at all.
    #[error("unknown meta-command \\{command}; contend supports \\set and \\sleep")]
    Unknown {
        /// The meta-command, without its backslash.
        command: String,
    },
    /// A `:variable` used before any `\set` of it.
    #[error(transparent)]
    Unset(#[from] UnsetVariable),
    /// Anything else, said with its fix.
    #[error("{0}")]
    Invalid(String),
}

/// pgbench meta-commands that contend refuses as unsupported (rather than unknown).
const UNSUPPORTED: &[&str] = &[
    "gset",
    "aset",
    "if",
    "elif",
    "else",
    "endif",
    "setshell",
    "shell",
    "startpipeline",
    "endpipeline",
    "syncpipeline",
];

/// Parses a script; errors carry the 1-based line they are on.
pub fn parse_program(text: &str) -> Result<Program, (usize, LineError)> {
    let mut parser = ScriptParser {
        chars: text.chars().collect(),
        position: 0,
        line: 1,
        variables: AUTOMATIC_VARIABLES.iter().map(|name| name.to_string()).collect(),
        set: AUTOMATIC_VARIABLES.iter().map(|_| true).collect(),
        commands: Vec::new(),
        open_transaction: None,
    };
    parser.run()?;
    if let Some(begun) = parser.open_transaction {
        return Err((
            begun,
            LineError::Invalid(
                "this transaction is never ended: end it with END; or COMMIT; before the script ends".into(),
            ),
        ));
    }
    if parser.commands.is_empty() {
        return Err((
            1,
            LineError::Invalid("the script has no SQL statement, \\set or \\sleep".into()),
        ));
    }
    Ok(Program {
        commands: parser.commands,
        variables: parser.variables,
    })
}

struct ScriptParser {
    chars: Vec<char>,
    position: usize,
    line: usize,
    variables: Vec<String>,
    /// Whether each slot has been set by the commands parsed so far.
    set: Vec<bool>,
    commands: Vec<Command>,
    /// Line of a BEGIN not yet ended.
    open_transaction: Option<usize>,
}

/// A SQL statement being read.
#[derive(Default)]
struct Statement {
    text: String,
    /// Line of its first character that is not blank or a comment.
    line: Option<usize>,
    /// Variables in order, with their lines.
    params: Vec<(String, usize)>,
}

impl ScriptParser {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.position + ahead).copied()
    }

    /// Takes the next character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.position += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn run(&mut self) -> Result<(), (usize, LineError)> {
        let mut statement = Statement::default();
        while let Some(c) = self.peek(0) {
            match c {
                ';' => {
                    self.bump();
                    let finished = std::mem::take(&mut statement);
                    self.finish_statement(finished)?;
                }
                '\\' => {
                    let line = self.line;
                    let (command, arguments) = self.read_meta_command();
                    if let Some(started) = statement.line {
                        if !matches!(command.as_str(), "gset" | "aset") {
                            return Err((
                                line,
                                LineError::Invalid(format!(
                                    "\\{command} inside the SQL statement begun on line {started}: end the statement with ; first"
                                )),
                            ));
                        }
                    }
                    self.meta_command(line, &command, &arguments)?;
                }
                '-' if self.peek(1) == Some('-') => {
                    let mut comment = String::new();
                    while let Some(c) = self.peek(0).filter(|c| *c != '\n') {
                        comment.push(c);
                        self.bump();
                    }
                    // Comments before a statement are not sent with it.
                    if statement.line.is_some() {
                        statement.text.push_str(&comment);
                    }
                }
                '/' if self.peek(1) == Some('*') => {
                    let mut comment = String::new();
                    self.block_comment(&mut comment)?;
                    if statement.line.is_some() {
                        statement.text.push_str(&comment);
                    }
                }
                '\'' | '"' => {
                    statement.line.get_or_insert(self.line);
                    let escapes = c == '\'' && self.is_escape_string(&statement.text);
                    self.quoted(c, escapes, &mut statement)?;
                }
                '$' if self.dollar_tag().is_some() => {
                    statement.line.get_or_insert(self.line);
                    self.dollar_quoted(&mut statement)?;
                }
                ':' => {
                    statement.line.get_or_insert(self.line);
                    self.colon(&mut statement);
                }
                c => {
                    if !c.is_whitespace() {
                        statement.line.get_or_insert(self.line);
                    }
                    statement.text.push(c);
                    self.bump();
                }
            }
        }
        // pgbench takes a last statement without its semicolon.
        self.finish_statement(statement)
    }

    /// Whether a quote starting now opens an `E'…'` string (backslash escapes).
    fn is_escape_string(&self, text_so_far: &str) -> bool {
        let mut before = text_so_far.chars().rev();
        match (before.next(), before.next()) {
            (Some('e' | 'E'), None) => true,
            (Some('e' | 'E'), Some(c)) => !is_name_char(c),
            _ => false,
        }
    }

    fn quoted(&mut self, quote: char, escapes: bool, statement: &mut Statement) -> Result<(), (usize, LineError)> {
        let started = self.line;
        statement.text.extend(self.bump());
        loop {
            let Some(c) = self.bump() else {
                let what = if quote == '"' { "quoted identifier" } else { "string" };
                return Err((
                    started,
                    LineError::Invalid(format!("this {what} is never closed: add the closing {quote}")),
                ));
            };
            statement.text.push(c);
            if escapes && c == '\\' {
                statement.text.extend(self.bump());
            } else if c == quote {
                // A doubled quote is one quote inside the string.
                if self.peek(0) == Some(quote) {
                    statement.text.extend(self.bump());
                } else {
                    return Ok(());
                }
            }
        }
    }

    fn block_comment(&mut self, comment: &mut String) -> Result<(), (usize, LineError)> {
        let started = self.line;
        let mut depth = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some('/'), Some('*')) => {
                    depth += 1;
                    comment.extend(self.bump());
                    comment.extend(self.bump());
                }
                (Some('*'), Some('/')) => {
                    depth -= 1;
                    comment.extend(self.bump());
                    comment.extend(self.bump());
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => comment.extend(self.bump()),
                (None, _) => {
                    return Err((
                        started,
                        LineError::Invalid("this /* comment is never closed: add */".into()),
                    ))
                }
            }
        }
    }

    /// The `$tag$` starting here, if one does.
    fn dollar_tag(&self) -> Option<String> {
        let mut tag = String::from("$");
        let mut ahead = 1;
        loop {
            match self.peek(ahead)? {
                '$' => {
                    tag.push('$');
                    return Some(tag);
                }
                c if c.is_ascii_digit() && ahead == 1 => return None, // $1 is a parameter
                c if is_name_char(c) => tag.push(c),
                _ => return None,
            }
            ahead += 1;
        }
    }

    fn dollar_quoted(&mut self, statement: &mut Statement) -> Result<(), (usize, LineError)> {
        let started = self.line;
        let tag = self.dollar_tag().unwrap_or_default();
        for _ in 0..tag.chars().count() {
            statement.text.extend(self.bump());
        }
        let closing: Vec<char> = tag.chars().collect();
        loop {
            if self.chars[self.position..].starts_with(&closing) {
                for _ in 0..closing.len() {
                    statement.text.extend(self.bump());
                }
                return Ok(());
            }
            let Some(c) = self.bump() else {
                return Err((
                    started,
                    LineError::Invalid(format!("this {tag}-quoted string is never closed: add {tag}")),
                ));
            };
            statement.text.push(c);
        }
    }

    /// `::` stays a cast; `:name` becomes the next `$n`.
    fn colon(&mut self, statement: &mut Statement) {
        self.bump();
        match self.peek(0) {
            Some(':') => {
                self.bump();
                statement.text.push_str("::");
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() => {
                let mut name = String::new();
                while let Some(c) = self.peek(0).filter(|c| is_name_char(*c)) {
                    name.push(c);
                    self.bump();
                }
                statement.params.push((name, self.line));
                statement.text.push_str(&format!("${}", statement.params.len()));
            }
            // `arr[1:2]`, `:=`: not a variable.
            _ => statement.text.push(':'),
        }
    }

    /// Reads `\command arguments` to the end of its line (a line ending in
    /// `\` continues on the next).
    fn read_meta_command(&mut self) -> (String, String) {
        self.bump();
        let mut command = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            command.push(c.to_ascii_lowercase());
            self.bump();
        }
        let mut arguments = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                self.bump();
                break;
            }
            if c == '\\' && matches!(self.peek(1), Some('\n')) {
                self.bump();
                self.bump();
                arguments.push(' ');
                continue;
            }
            if c == '\\' && self.peek(1) == Some('\r') && self.peek(2) == Some('\n') {
                self.position += 1;
                self.bump();
                self.bump();
                arguments.push(' ');
                continue;
            }
            arguments.push(c);
            self.bump();
        }
        // A `--` comment ends a meta-command line.
        if let Some(comment) = arguments.find("--") {
            arguments.truncate(comment);
        }
        (command, arguments.trim().to_string())
    }

    fn meta_command(&mut self, line: usize, command: &str, arguments: &str) -> Result<(), (usize, LineError)> {
        let invalid = |reason: String| (line, LineError::Invalid(reason));
        match command {
            "set" => {
                let (name, expression) = arguments
                    .split_once(char::is_whitespace)
                    .map(|(name, rest)| (name, rest.trim()))
                    .unwrap_or((arguments, ""));
                if name.is_empty() || !name.chars().all(is_name_char) {
                    return Err(invalid(format!(
                        "\\set needs a variable name made of letters, digits and _, then an expression, e.g. \\set aid random(1, 100000 * :scale); got `{arguments}`"
                    )));
                }
                if expression.is_empty() {
                    return Err(invalid(format!(
                        "\\set {name} needs an expression, e.g. \\set {name} random(1, 10)"
                    )));
                }
                let (variables, set) = (&self.variables, &self.set);
                let mut lookup = |wanted: &str| lookup_set(variables, set, wanted);
                let expr = expr::parse(expression, &mut lookup)
                    .map_err(|e| invalid(format!("in \\set {name}: {e} of `{expression}`")))?;
                if expr.is_constant() {
                    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0);
                    expr.evaluate(&[], &mut rng)
                        .map_err(|e| invalid(format!("in \\set {name}: {e}")))?;
                }
                let slot = self.slot(name);
                self.set[slot] = true;
                self.commands.push(Command::Set { line, slot, expr });
                Ok(())
            }
            "sleep" => {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                let unit_us = match words.get(1).copied() {
                    None | Some("s") => 1_000_000,
                    Some("ms") => 1_000,
                    Some("us") => 1,
                    Some(other) => return Err(invalid(format!("\\sleep unit `{other}` is not one of us, ms or s"))),
                };
                if words.len() > 2 {
                    return Err(invalid(format!(
                        "\\sleep takes an amount and a unit, e.g. \\sleep 10 ms; got `{arguments}`"
                    )));
                }
                let amount = match words.first() {
                    None => return Err(invalid("\\sleep needs an amount, e.g. \\sleep 10 ms".into())),
                    Some(word) => match word.strip_prefix(':') {
                        Some(name) => {
                            SleepAmount::Variable(lookup_set(&self.variables, &self.set, name).map_err(|unset| (line, unset.into()))?)
                        }
                        None => SleepAmount::Constant(word.parse().map_err(|_| {
                            invalid(format!("\\sleep amount `{word}` is not a whole number or a :variable"))
                        })?),
                    },
                };
                self.commands.push(Command::Sleep { line, amount, unit_us });
                Ok(())
            }
            "" => Err(invalid("a lone backslash: meta-commands are \\set and \\sleep".into())),
            command if UNSUPPORTED.contains(&command) => Err((
                line,
                LineError::Unsupported {
                    command: command.to_string(),
                },
            )),
            command => Err((
                line,
                LineError::Unknown {
                    command: command.to_string(),
                },
            )),
        }
    }

    fn slot(&mut self, name: &str) -> usize {
        match self.variables.iter().position(|known| known == name) {
            Some(slot) => slot,
            None => {
                self.variables.push(name.to_string());
                self.set.push(false);
                self.variables.len() - 1
            }
        }
    }

    fn finish_statement(&mut self, statement: Statement) -> Result<(), (usize, LineError)> {
        let Some(line) = statement.line else {
            // Only blanks and comments.
            return Ok(());
        };
        let mut params = Vec::with_capacity(statement.params.len());
        for (name, used_on) in &statement.params {
            params.push(
                lookup_set(&self.variables, &self.set, name)
                    .map_err(|unset| (*used_on, LineError::Unset(unset)))?,
            );
        }
        let text = statement.text.trim().to_string();
        match leading_keyword(&text).as_str() {
            "begin" | "start" => {
                if let Some(begun) = self.open_transaction {
                    return Err((
                        line,
                        LineError::Invalid(format!(
                            "BEGIN while the transaction begun on line {begun} is still open: end it first with END;"
                        )),
                    ));
                }
                self.open_transaction = Some(line);
            }
            "end" | "commit" | "rollback" | "abort" => self.open_transaction = None,
            _ => {}
        }
        self.commands.push(Command::Sql { line, text, params });
        Ok(())
    }
}

/// The slot of a variable that has been set by now.
fn lookup_set(variables: &[String], set: &[bool], name: &str) -> Result<usize, UnsetVariable> {
    match variables.iter().position(|known| known == name) {
        Some(slot) if set.get(slot).copied().unwrap_or(false) => Ok(slot),
        _ => Err(UnsetVariable {
            name: name.to_string(),
            automatic: AUTOMATIC_VARIABLES,
        }),
    }
}

/// The first word of a statement after blanks and comments, lowercased.
fn leading_keyword(text: &str) -> String {
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, next)| next).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, next)| next).trim_start();
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The value of a `\sleep`, in microseconds (negative amounts sleep 0).
pub fn sleep_us(amount: SleepAmount, unit_us: u64, variables: &[Value]) -> Result<u64, expr::EvalError> {
    let units = match amount {
        SleepAmount::Constant(units) => units,
        SleepAmount::Variable(slot) => expr::to_int(variables.get(slot).copied().unwrap_or(Value::Int(0)))?,
    };
    Ok(u64::try_from(units).unwrap_or(0).saturating_mul(unit_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPCB_LIKE: &str = include_str!("../../../sql/script/tpcb-like.sql");

    fn sql(program: &Program) -> Vec<(&str, Vec<&str>)> {
        program
            .commands
            .iter()
            .filter_map(|command| match command {
                Command::Sql { text, params, .. } => Some((
                    text.as_str(),
                    params.iter().map(|slot| program.variables[*slot].as_str()).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn error(text: &str) -> (usize, String) {
        let (line, error) = parse_program(text).unwrap_err();
        (line, error.to_string())
    }

    #[test]
    fn tpcb_like_parses_into_sets_and_prepared_statements() {
        let program = parse_program(TPCB_LIKE).unwrap();
        let sets = program
            .commands
            .iter()
            .filter(|c| matches!(c, Command::Set { .. }))
            .count();
        assert_eq!(sets, 4);
        let statements = sql(&program);
        assert_eq!(statements.len(), 7);
        assert_eq!(statements[0], ("BEGIN", vec![]));
        assert_eq!(
            statements[1],
            (
                "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
                vec!["delta", "aid"]
            )
        );
        assert_eq!(
            statements[5].1,
            vec!["tid", "bid", "aid", "delta"],
            "{}",
            statements[5].0
        );
        assert_eq!(statements[6], ("END", vec![]));
    }

    #[test]
    fn statements_span_lines_and_respect_quotes_comments_and_casts() {
        let program = parse_program(
            "\\set id 3\nSELECT ':not_a_var;', \"semi;colon\", $$ ; $$, $tag$ :x $tag$ /* ; :y */ -- ; :z\n  , :id::int8, arr[1:2]\nFROM t\nWHERE a = E'it\\'s;' AND b = 'it''s;';\n",
        )
        .unwrap();
        let statements = sql(&program);
        assert_eq!(statements.len(), 1, "{statements:?}");
        let (text, params) = &statements[0];
        assert_eq!(params, &vec!["id"]);
        assert!(text.contains("$1::int8"), "{text}");
        assert!(text.contains("arr[1:2]"), "{text}");
        assert!(text.contains("':not_a_var;'"), "{text}");
        assert!(text.ends_with("b = 'it''s;'"), "{text}");
        let Command::Sql { line, .. } = &program.commands[1] else {
            panic!("{:?}", program.commands)
        };
        assert_eq!(*line, 2);
    }

    #[test]
    fn a_last_statement_may_omit_its_semicolon_and_blank_ones_are_skipped() {
        let program = parse_program(";;\n-- only a comment;\nSELECT 1").unwrap();
        assert_eq!(sql(&program), vec![("SELECT 1", vec![])]);
    }

    #[test]
    fn sleep_takes_units_and_variables() {
        let program = parse_program("\\set n 5\n\\sleep 10 ms\n\\sleep :n us\n\\sleep 2\n").unwrap();
        let sleeps: Vec<u64> = program
            .commands
            .iter()
            .filter_map(|command| match command {
                Command::Sleep { amount, unit_us, .. } => {
                    sleep_us(*amount, *unit_us, &[Value::Int(1), Value::Int(5)]).ok()
                }
                _ => None,
            })
            .collect();
        assert_eq!(sleeps, [10_000, 5, 2_000_000]);
    }

    #[test]
    fn meta_commands_continue_over_lines_and_ignore_case() {
        let program = parse_program("\\SET aid random(1,\\\n  10)\nSELECT :aid;").unwrap();
        assert_eq!(sql(&program), vec![("SELECT $1", vec!["aid"])]);
    }

    #[test]
    fn unsupported_and_unknown_meta_commands_name_their_line() {
        assert_eq!(
            error("SELECT 1;\n\n\\gset\n"),
            (3, "\\gset is not supported; contend supports \\set and \\sleep".into())
        );
        assert_eq!(
            error("SELECT abalance FROM t \\gset\n"),
            (1, "\\gset is not supported; contend supports \\set and \\sleep".into())
        );
        assert_eq!(
            error("\\set a 1\n\\frobnicate 3\n"),
            (
                2,
                "unknown meta-command \\frobnicate; contend supports \\set and \\sleep".into()
            )
        );
        assert_eq!(error("\\if 1\n").0, 1);
        assert!(error("SELECT 1\n\\set a 1\n")
            .1
            .contains("inside the SQL statement begun on line 1"));
    }

    #[test]
    fn variables_must_be_set_before_they_are_read() {
        let (line, message) = error("\\set a 1\nSELECT :a,\n :b;\n\\set b 2\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("variable :b is used before any \\set of it"),
            "{message}"
        );
        assert!(message.contains(":scale"), "{message}");
        let (line, message) = error("\\set a :a + 1\n");
        assert_eq!(line, 1);
        assert!(message.contains(":a is used before"), "{message}");
        assert!(parse_program("SELECT :scale;").is_ok(), ":scale is automatic");
        assert_eq!(error("\\sleep :later ms\n\\set later 1\n").0, 1);
    }

    #[test]
    fn bad_set_and_sleep_lines_say_what_to_write() {
        assert!(error("\\set\n").1.contains("\\set needs a variable name"));
        assert!(error("\\set x\n").1.contains("\\set x needs an expression"));
        assert!(error("\\set x 1 +\n").1.contains("in \\set x: column"));
        assert!(error("\\set x random(10, 1)\n").1.contains("empty range"));
        assert!(error("\\set x random_zipfian(1, 10, 0.5)\n")
            .1
            .contains("zipfian parameter"));
        assert!(error("\\sleep\n").1.contains("needs an amount"));
        assert!(error("\\sleep 1 minute\n").1.contains("not one of us, ms or s"));
        assert!(error("\\sleep 1.5 ms\n").1.contains("not a whole number"));
    }

    #[test]
    fn transactions_must_end_and_not_nest() {
        let (line, message) = error("SELECT 1;\nBEGIN;\nSELECT 2;\n");
        assert_eq!(line, 2);
        assert!(message.contains("never ended"), "{message}");
        assert_eq!(error("BEGIN;\nBEGIN;\nEND;").0, 2);
        assert!(parse_program("begin isolation level serializable;\nselect 1;\ncommit;").is_ok());
        assert!(parse_program("/* c */ START TRANSACTION;\nROLLBACK;").is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_program(&text);
        }

        #[test]
        fn parsing_script_like_text_never_panics(text in "[\\\\a-z :;'\"$/*\n()0-9@,.+%E-]{0,200}") {
            if let Ok(program) = parse_program(&text) {
                for command in &program.commands {
                    if let Command::Sql { text, params, .. } = command {
                        // Every parameter is numbered in the text.
                        for n in 1..=params.len() {
                            proptest::prop_assert!(text.contains(&format!("${n}")), "{text}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unclosed_quotes_and_empty_scripts_are_refused() {
        assert_eq!(
            error("\n\nSELECT 'abc;\n"),
            (3, "this string is never closed: add the closing '".into())
        );
        assert!(error("SELECT $x$ abc").1.contains("$x$-quoted string is never closed"));
        assert!(error("/* abc").1.contains("never closed"));
        assert!(error("-- nothing\n\n").1.contains("no SQL statement"));
    }
}
