//! Sizing formulas people bring, such as `pool = 2 * cores + spindles` or
//! `max_connections = vus * 1.5 + eps / 10`, parsed once and evaluated
//! against what a sweep measured.
//!
//! The grammar is small on purpose: numbers, the variables in [`VARIABLES`],
//! `+ - * / ×`, parentheses, unary minus, and a postfix `%` (divides by
//! 100). The left side names what the formula sizes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Variables a formula may use, with what they stand for.
pub const VARIABLES: &[(&str, &str)] = &[
    ("cores", "CPU cores of the database server"),
    ("spindles", "effective spindles (--spindles)"),
    ("vus", "concurrent clients of the sweep (closed loop), the largest"),
    ("clients", "same as vus"),
    ("eps", "peak attempts per second measured"),
    ("instances", "application instances, the largest swept"),
];

/// What a formula sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizes {
    /// Total connections of all pools together.
    Pool,
    /// The server's max_connections.
    MaxConnections,
}

impl Sizes {
    /// The name as written on a formula's left side.
    pub fn name(self) -> &'static str {
        match self {
            Sizes::Pool => "pool",
            Sizes::MaxConnections => "max_connections",
        }
    }
}

/// Values of the variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bindings {
    /// CPU cores of the database server.
    pub cores: f64,
    /// Effective spindles.
    pub spindles: f64,
    /// Largest number of closed-loop clients.
    pub vus: f64,
    /// Peak attempts per second.
    pub eps: f64,
    /// Largest number of instances.
    pub instances: f64,
}

impl Bindings {
    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "cores" => self.cores,
            "spindles" => self.spindles,
            "vus" | "clients" => self.vus,
            "eps" => self.eps,
            "instances" => self.instances,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Variable(String),
    Negate(Box<Expr>),
    Percent(Box<Expr>),
    Binary(Box<Expr>, char, Box<Expr>),
}

impl Expr {
    fn eval(&self, bindings: &Bindings) -> f64 {
        match self {
            Expr::Number(n) => *n,
            Expr::Variable(name) => bindings.get(name).unwrap_or(f64::NAN),
            Expr::Negate(e) => -e.eval(bindings),
            Expr::Percent(e) => e.eval(bindings) / 100.0,
            Expr::Binary(a, op, b) => {
                let (a, b) = (a.eval(bindings), b.eval(bindings));
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => a / b,
                }
            }
        }
    }
}

/// A parsed formula; serializes as the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Formula {
    text: String,
    sizes: Sizes,
    expr: Expr,
}

/// Why a formula could not be parsed: the text, the position (in
/// characters, from 1) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("formula {text:?}, at character {position}: {problem}")]
pub struct FormulaError {
    /// The formula as given.
    pub text: String,
    /// Character position of the problem, from 1.
    pub position: usize,
    /// What was wrong.
    pub problem: String,
}

impl Formula {
    /// Parses `pool = EXPR` or `max_connections = EXPR`.
    pub fn parse(text: &str) -> Result<Formula, FormulaError> {
        let error = |position: usize, problem: String| FormulaError {
            text: text.to_string(),
            position: position + 1,
            problem,
        };
        let Some(eq) = text.find('=') else {
            return Err(error(
                0,
                "start with what it sizes: `pool = …` or `max_connections = …`".into(),
            ));
        };
        let sizes = match text[..eq].trim() {
            "pool" => Sizes::Pool,
            "max_connections" => Sizes::MaxConnections,
            other => {
                return Err(error(
                    0,
                    format!("{other:?} is not something contend measures; write `pool = …` or `max_connections = …`"),
                ))
            }
        };
        let offset = text[..=eq].chars().count();
        let chars: Vec<char> = text[eq + 1..].chars().collect();
        let mut parser = Parser { chars: &chars, at: 0 };
        let expr = parser
            .sum()
            .and_then(|e| {
                parser.skip_space();
                match parser.peek() {
                    None => Ok(e),
                    Some(c) => Err((parser.at, format!("unexpected {c:?}"))),
                }
            })
            .map_err(|(at, problem)| error(offset + at, problem))?;
        Ok(Formula {
            text: text.trim().to_string(),
            sizes,
            expr,
        })
    }

    /// What the formula sizes.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The formula as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The variables it uses, each once, in order of appearance.
    pub fn variables(&self) -> Vec<&str> {
        fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a str>) {
            match expr {
                Expr::Number(_) => {}
                Expr::Variable(name) => {
                    if !out.contains(&name.as_str()) {
                        out.push(name);
                    }
                }
                Expr::Negate(e) | Expr::Percent(e) => walk(e, out),
                Expr::Binary(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    /// The formula with the values of its variables, e.g.
    /// `pool = 2 * cores + spindles with cores = 2, spindles = 1`.
    pub fn explained(&self, bindings: &Bindings) -> String {
        let values: Vec<String> = self
            .variables()
            .iter()
            .map(|v| format!("{v} = {}", bindings.get(v).map_or("?".into(), |x| format!("{x:.0}"))))
            .collect();
        if values.is_empty() {
            self.text.clone()
        } else {
            format!("{} with {}", self.text, values.join(", "))
        }
    }

    /// Its value for these bindings.
    pub fn eval(&self, bindings: &Bindings) -> f64 {
        self.expr.eval(bindings)
    }
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Formula {
    type Error = FormulaError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Formula::parse(&text)
    }
}

impl From<Formula> for String {
    fn from(formula: Formula) -> String {
        formula.text
    }
}

impl std::str::FromStr for Formula {
    type Err = FormulaError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Formula::parse(text)
    }
}

type Parsed = Result<Expr, (usize, String)>;

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn sum(&mut self) -> Parsed {
        let mut left = self.product()?;
        loop {
            self.skip_space();
            match self.peek() {
                Some(op @ ('+' | '-')) => {
                    self.at += 1;
                    left = Expr::Binary(Box::new(left), op, Box::new(self.product()?));
                }
                _ => return Ok(left),
            }
        }
    }

    fn product(&mut self) -> Parsed {
        let mut left = self.unary()?;
        loop {
            self.skip_space();
            let op = match self.peek() {
                Some('*' | '×') => '*',
                Some('/') => '/',
                _ => return Ok(left),
            };
            self.at += 1;
            left = Expr::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Parsed {
        self.skip_space();
        if self.peek() == Some('-') {
            self.at += 1;
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        let mut atom = self.atom()?;
        loop {
            self.skip_space();
            if self.peek() == Some('%') {
                self.at += 1;
                atom = Expr::Percent(Box::new(atom));
            } else {
                return Ok(atom);
            }
        }
    }

    fn atom(&mut self) -> Parsed {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            Some('(') => {
                self.at += 1;
                let inner = self.sum()?;
                self.skip_space();
                if self.peek() != Some(')') {
                    return Err((self.at, "expected `)`".into()));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '_') {
                    self.at += 1;
                }
                let digits: String = self.chars[start..self.at].iter().filter(|&&c| c != '_').collect();
                digits
                    .parse()
                    .map(Expr::Number)
                    .map_err(|_| (start, format!("{digits:?} is not a number")))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().collect::<String>().to_lowercase();
                if Bindings::default().get(&name).is_none() {
                    let known: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
                    return Err((start, format!("unknown variable {name:?}; known: {}", known.join(", "))));
                }
                Ok(Expr::Variable(name))
            }
            Some(c) => Err((start, format!("expected a number, a variable or `(`, found {c:?}"))),
            None => Err((start, "expected a number, a variable or `(`, found the end".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings() -> Bindings {
        Bindings {
            cores: 2.0,
            spindles: 1.0,
            vus: 100.0,
            eps: 500.0,
            instances: 3.0,
        }
    }

    #[test]
    fn evaluates_with_precedence_parentheses_and_percent() {
        let f = Formula::parse("pool = 2 * cores + spindles").unwrap();
        assert_eq!(f.sizes(), Sizes::Pool);
        assert_eq!(f.eval(&bindings()), 5.0);
        assert_eq!(
            f.explained(&bindings()),
            "pool = 2 * cores + spindles with cores = 2, spindles = 1"
        );
        let f = Formula::parse("max_connections = (VUs × 1.5 + EPS / 10) * 120%").unwrap();
        assert_eq!(f.sizes(), Sizes::MaxConnections);
        assert!((f.eval(&bindings()) - 240.0).abs() < 1e-9);
        let f = Formula::parse("pool = -instances + 10 - 2 - 1").unwrap();
        assert_eq!(f.eval(&bindings()), 4.0);
        let f = Formula::parse("pool = 1_000 / 8 / 5").unwrap();
        assert_eq!(f.eval(&bindings()), 25.0);
    }

    #[test]
    fn errors_name_the_position_and_the_fix() {
        let e = Formula::parse("2 * cores").unwrap_err();
        assert!(e.problem.contains("pool = "), "{e}");
        let e = Formula::parse("threads = 4").unwrap_err();
        assert!(e.problem.contains("\"threads\""), "{e}");
        let e = Formula::parse("pool = 2 * disks").unwrap_err();
        assert_eq!(e.position, 12, "{e}");
        assert!(e.problem.contains("unknown variable \"disks\""), "{e}");
        let e = Formula::parse("pool = (2 + 3").unwrap_err();
        assert!(e.problem.contains("`)`"), "{e}");
        let e = Formula::parse("pool = 2 +").unwrap_err();
        assert!(e.problem.contains("the end"), "{e}");
        let e = Formula::parse("pool = 2 3").unwrap_err();
        assert!(e.problem.contains("unexpected '3'"), "{e}");
        let e = Formula::parse("pool = 1.2.3").unwrap_err();
        assert!(e.problem.contains("not a number"), "{e}");
    }

    #[test]
    fn round_trips_through_json_as_its_text() {
        let f = Formula::parse("pool = cores * 4").unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, "\"pool = cores * 4\"");
        let back: Formula = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Formula>("\"pool = nope\"").is_err());
    }
}
