//! pgbench's `\set` expression language, the part scripts use: integer and
//! double constants, `:variables`, `+ - * / %`, unary minus, parentheses, and
//! the functions listed in [`Function`].
//!
//! Parsing turns text into an [`Expr`] whose variables are already resolved to
//! slots; evaluation follows pgbench's semantics (integer arithmetic checked
//! for overflow, `/` truncating between integers, a double anywhere making
//! the result a double, the random distributions drawn exactly as pgbench
//! draws them). This module knows nothing of files, lines or SQL.

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A variable's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
        }
    }
}

/// Smallest `random_zipfian` parameter pgbench accepts.
pub const MIN_ZIPFIAN_PARAMETER: f64 = 1.001;
/// Largest `random_zipfian` parameter pgbench accepts.
pub const MAX_ZIPFIAN_PARAMETER: f64 = 1000.0;
/// Smallest `random_gaussian` parameter pgbench accepts.
pub const MIN_GAUSSIAN_PARAMETER: f64 = 2.0;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An integer constant.
    Int(i64),
    /// A double constant.
    Double(f64),
    /// A variable, by slot.
    Variable(usize),
    /// `-operand`.
    Negate(Box<Expr>),
    /// `left op right`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `function(args…)`, arity already checked.
    Call {
        /// The function.
        function: Function,
        /// Its arguments.
        args: Vec<Expr>,
    },
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Subtract,
    /// `*`.
    Multiply,
    /// `/` (truncating between integers).
    Divide,
    /// `%` (integers; doubles are truncated first).
    Modulo,
}

/// The functions contend evaluates, with pgbench's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `abs(a)`.
    Abs,
    /// `double(i)`.
    Double,
    /// `int(x)`: truncates toward zero.
    Int,
    /// `greatest(a, …)`.
    Greatest,
    /// `least(a, …)`.
    Least,
    /// `mod(i, j)`.
    Mod,
    /// `pi()`.
    Pi,
    /// `pow(x, y)` / `power(x, y)`.
    Pow,
    /// `sqrt(x)`.
    Sqrt,
    /// `exp(x)`.
    Exp,
    /// `ln(x)`.
    Ln,
    /// `random(lb, ub)`: uniform integer in [lb, ub].
    Random,
    /// `random_exponential(lb, ub, parameter)`.
    RandomExponential,
    /// `random_gaussian(lb, ub, parameter)`.
    RandomGaussian,
    /// `random_zipfian(lb, ub, parameter)`.
    RandomZipfian,
}

/// Function names and arities (`None`: one or more arguments).
const FUNCTIONS: &[(&str, Function, Option<usize>)] = &[
    ("abs", Function::Abs, Some(1)),
    ("double", Function::Double, Some(1)),
    ("int", Function::Int, Some(1)),
    ("greatest", Function::Greatest, None),
    ("least", Function::Least, None),
    ("mod", Function::Mod, Some(2)),
    ("pi", Function::Pi, Some(0)),
    ("pow", Function::Pow, Some(2)),
    ("power", Function::Pow, Some(2)),
    ("sqrt", Function::Sqrt, Some(1)),
    ("exp", Function::Exp, Some(1)),
    ("ln", Function::Ln, Some(1)),
    ("random", Function::Random, Some(2)),
    ("random_exponential", Function::RandomExponential, Some(3)),
    ("random_gaussian", Function::RandomGaussian, Some(3)),
    ("random_zipfian", Function::RandomZipfian, Some(3)),
];

/// pgbench functions contend does not evaluate.
const UNSUPPORTED_FUNCTIONS: &[&str] = &["debug", "hash", "hash_fnv1a", "hash_murmur2", "permute"];

/// Why an expression does not parse; `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct ParseError {
    /// Where in the expression.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub reason: String,
}

/// A `:name` that the caller's lookup does not resolve: used before any
/// `\set` of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "variable :{name} is used before any \\set of it; set it on an earlier line (\\set {name} …) — contend sets {} by itself",
    .automatic.iter().map(|v| format!(":{v}")).collect::<Vec<_>>().join(", ")
)]
pub struct UnsetVariable {
    /// The variable, without its colon.
    pub name: String,
    /// The variables set without a `\set` (pgbench's `scale`).
    pub automatic: &'static [&'static str],
}

/// Why an evaluation failed, as pgbench would report it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// Integer or double division (or modulo) by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// An integer result beyond 64 bits.
    #[error("bigint out of range")]
    IntegerOverflow,
    /// A double that is NaN or beyond 64 bits where an integer is needed.
    #[error("double {0} does not fit an integer")]
    NotAnInteger(f64),
    /// `random*(lb, ub)` with ub < lb.
    #[error("empty range given to random: {lower} > {upper}")]
    EmptyRange {
        /// Lower bound.
        lower: i64,
        /// Upper bound.
        upper: i64,
    },
    /// `random*(lb, ub)` whose size does not fit 64 bits.
    #[error("random range is too large")]
    RangeTooLarge,
    /// `random_exponential` parameter ≤ 0.
    #[error("exponential parameter must be greater than zero (not {0})")]
    ExponentialParameter(f64),
    /// `random_gaussian` parameter < 2.
    #[error("gaussian parameter must be at least {MIN_GAUSSIAN_PARAMETER} (not {0})")]
    GaussianParameter(f64),
    /// `random_zipfian` parameter outside [1.001, 1000].
    #[error("zipfian parameter must be in range [{MIN_ZIPFIAN_PARAMETER}, {MAX_ZIPFIAN_PARAMETER}] (not {0})")]
    ZipfianParameter(f64),
}

impl EvalError {
    /// A stable key, counted in a cell's results when a transaction fails on it.
    pub fn key(&self) -> &'static str {
        match self {
            EvalError::DivisionByZero => "script_division_by_zero",
            EvalError::IntegerOverflow => "script_integer_overflow",
            EvalError::NotAnInteger(_) => "script_not_an_integer",
            EvalError::EmptyRange { .. } => "script_empty_random_range",
            EvalError::RangeTooLarge => "script_random_range_too_large",
            EvalError::ExponentialParameter(_) => "script_bad_exponential_parameter",
            EvalError::GaussianParameter(_) => "script_bad_gaussian_parameter",
            EvalError::ZipfianParameter(_) => "script_bad_zipfian_parameter",
        }
    }
}

/// Parses `text`; `variable` maps a `:name` to its slot, or says why it cannot.
pub fn parse(
    text: &str,
    variable: &mut dyn FnMut(&str) -> Result<usize, UnsetVariable>,
) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        end_column: text.chars().count() + 1,
        variable,
    };
    let expr = parser.sum()?;
    match parser.tokens.get(parser.position) {
        None => Ok(expr),
        Some((column, token)) => Err(ParseError {
            column: *column,
            reason: format!("unexpected {} after a complete expression", token.describe()),
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Int(i64),
    Double(f64),
    Variable(String),
    Name(String),
    Symbol(char),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Int(i) => format!("number {i}"),
            Token::Double(d) => format!("number {d}"),
            Token::Variable(name) => format!("variable :{name}"),
            Token::Name(name) => format!("`{name}`"),
            Token::Symbol(c) => format!("`{c}`"),
        }
    }
}

/// Whether `c` may appear in a variable name (pgbench: ASCII letters, digits,
/// underscore, and any non-ASCII character).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut is_double = false;
            if i < chars.len() && chars[i] == '.' {
                is_double = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    is_double = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let literal: String = chars[start..i].iter().collect();
            let token = if is_double {
                literal.parse().map(Token::Double).ok()
            } else {
                literal.parse().map(Token::Int).ok()
            };
            tokens.push((
                column,
                token.ok_or_else(|| ParseError {
                    column,
                    reason: format!("constant {literal} is out of range for a 64-bit integer"),
                })?,
            ));
        } else if c == ':' {
            let start = i + 1;
            i = start;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            if i == start {
                return Err(ParseError {
                    column,
                    reason: "`:` must be followed by a variable name, e.g. :aid".into(),
                });
            }
            tokens.push((column, Token::Variable(chars[start..i].iter().collect())));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((column, Token::Name(chars[start..i].iter().collect())));
        } else if "+-*/%(),".contains(c) {
            tokens.push((column, Token::Symbol(c)));
            i += 1;
        } else {
            return Err(ParseError {
                column,
                reason: format!(
                    "`{c}` is not supported: contend evaluates numbers, :variables, + - * / %, parentheses and functions"
                ),
            });
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    position: usize,
    end_column: usize,
    variable: &'a mut dyn FnMut(&str) -> Result<usize, UnsetVariable>,
}

impl Parser<'_> {
    fn peek_symbol(&self) -> Option<char> {
        match self.tokens.get(self.position) {
            Some((_, Token::Symbol(c))) => Some(*c),
            _ => None,
        }
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.position)
            .map_or(self.end_column, |(column, _)| *column)
    }

    fn expect_symbol(&mut self, symbol: char, context: &str) -> Result<(), ParseError> {
        if self.peek_symbol() == Some(symbol) {
            self.position += 1;
            return Ok(());
        }
        let found = self
            .tokens
            .get(self.position)
            .map_or("the end".to_string(), |(_, token)| token.describe());
        Err(ParseError {
            column: self.column(),
            reason: format!("expected `{symbol}` {context}, found {found}"),
        })
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        while let Some(symbol @ ('+' | '-')) = self.peek_symbol() {
            self.position += 1;
            let right = self.product()?;
            let op = if symbol == '+' {
                BinaryOp::Add
            } else {
                BinaryOp::Subtract
            };
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    /// product := unary (('*' | '/' | '%') unary)*
    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Some(symbol @ ('*' | '/' | '%')) = self.peek_symbol() {
            self.position += 1;
            let right = self.unary()?;
            let op = match symbol {
                '*' => BinaryOp::Multiply,
                '/' => BinaryOp::Divide,
                _ => BinaryOp::Modulo,
            };
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    /// unary := ('-' | '+') unary | primary
    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek_symbol() {
            Some('-') => {
                self.position += 1;
                Ok(match self.unary()? {
                    Expr::Int(i) => Expr::Int(i.checked_neg().ok_or_else(|| ParseError {
                        column: self.column(),
                        reason: "constant is out of range for a 64-bit integer".into(),
                    })?),
                    Expr::Double(d) => Expr::Double(-d),
                    other => Expr::Negate(Box::new(other)),
                })
            }
            Some('+') => {
                self.position += 1;
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let column = self.column();
        let Some((_, token)) = self.tokens.get(self.position).cloned() else {
            return Err(ParseError {
                column,
                reason: "the expression ends where a value is expected".into(),
            });
        };
        self.position += 1;
        match token {
            Token::Int(i) => Ok(Expr::Int(i)),
            Token::Double(d) => Ok(Expr::Double(d)),
            Token::Variable(name) => (self.variable)(&name)
                .map(Expr::Variable)
                .map_err(|unset| ParseError {
                    column,
                    reason: unset.to_string(),
                }),
            Token::Symbol('(') => {
                let inner = self.sum()?;
                self.expect_symbol(')', "to close the parenthesis")?;
                Ok(inner)
            }
            Token::Name(name) => self.call(&name, column),
            other => Err(ParseError {
                column,
                reason: format!("unexpected {} where a value is expected", other.describe()),
            }),
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, ParseError> {
        let lowered = name.to_ascii_lowercase();
        let Some(&(_, function, arity)) = FUNCTIONS.iter().find(|(known, _, _)| *known == lowered) else {
            let supported: Vec<&str> = FUNCTIONS.iter().map(|(known, _, _)| *known).collect();
            let reason = if UNSUPPORTED_FUNCTIONS.contains(&lowered.as_str()) {
                format!(
                    "function {lowered} is not supported; contend supports {}",
                    supported.join(", ")
                )
            } else {
                format!("unknown function `{name}`; contend supports {}", supported.join(", "))
            };
            return Err(ParseError { column, reason });
        };
        self.expect_symbol('(', &format!("after {lowered}"))?;
        let mut args = Vec::new();
        if self.peek_symbol() == Some(')') {
            self.position += 1;
        } else {
            loop {
                args.push(self.sum()?);
                if self.peek_symbol() == Some(',') {
                    self.position += 1;
                    continue;
                }
                self.expect_symbol(')', &format!("to close {lowered}'s arguments"))?;
                break;
            }
        }
        let arity_ok = match arity {
            Some(n) => args.len() == n,
            None => !args.is_empty(),
        };
        if !arity_ok {
            let wanted = match arity {
                Some(1) => "1 argument".to_string(),
                Some(n) => format!("{n} arguments"),
                None => "at least 1 argument".to_string(),
            };
            return Err(ParseError {
                column,
                reason: format!("{lowered} takes {wanted}, not {}", args.len()),
            });
        }
        Ok(Expr::Call { function, args })
    }
}

impl Expr {
    /// Whether the expression reads no variable (it can be checked once, when parsed).
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Int(_) | Expr::Double(_) => true,
            Expr::Variable(_) => false,
            Expr::Negate(operand) => operand.is_constant(),
            Expr::Binary { left, right, .. } => left.is_constant() && right.is_constant(),
            Expr::Call { args, .. } => args.iter().all(Expr::is_constant),
        }
    }

    /// Evaluates with `variables` indexed by slot, drawing from `rng`.
    pub fn evaluate(&self, variables: &[Value], rng: &mut SmallRng) -> Result<Value, EvalError> {
        match self {
            Expr::Int(i) => Ok(Value::Int(*i)),
            Expr::Double(d) => Ok(Value::Double(*d)),
            Expr::Variable(slot) => Ok(variables.get(*slot).copied().unwrap_or(Value::Int(0))),
            Expr::Negate(operand) => match operand.evaluate(variables, rng)? {
                Value::Int(i) => i.checked_neg().map(Value::Int).ok_or(EvalError::IntegerOverflow),
                Value::Double(d) => Ok(Value::Double(-d)),
            },
            Expr::Binary { op, left, right } => {
                let left = left.evaluate(variables, rng)?;
                let right = right.evaluate(variables, rng)?;
                binary(*op, left, right)
            }
            Expr::Call { function, args } => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(arg.evaluate(variables, rng)?);
                }
                call(*function, &values, rng)
            }
        }
    }
}

/// pgbench's coercion of a value to an integer: doubles truncate toward zero.
pub fn to_int(value: Value) -> Result<i64, EvalError> {
    match value {
        Value::Int(i) => Ok(i),
        // i64::MAX as f64 rounds up to 2^63, itself out of range.
        Value::Double(d) if d.is_nan() || d < i64::MIN as f64 || d >= i64::MAX as f64 => {
            Err(EvalError::NotAnInteger(d))
        }
        Value::Double(d) => Ok(d as i64),
    }
}

fn to_double(value: Value) -> f64 {
    match value {
        Value::Int(i) => i as f64,
        Value::Double(d) => d,
    }
}

fn binary(op: BinaryOp, left: Value, right: Value) -> Result<Value, EvalError> {
    match (left, right) {
        (Value::Int(l), Value::Int(r)) => {
            let result = match op {
                BinaryOp::Add => l.checked_add(r),
                BinaryOp::Subtract => l.checked_sub(r),
                BinaryOp::Multiply => l.checked_mul(r),
                BinaryOp::Divide if r == 0 => return Err(EvalError::DivisionByZero),
                // Rust's integer division truncates toward zero, as C's does.
                BinaryOp::Divide => l.checked_div(r),
                BinaryOp::Modulo => return modulo(l, r).map(Value::Int),
            };
            result.map(Value::Int).ok_or(EvalError::IntegerOverflow)
        }
        (left, right) => {
            let (l, r) = (to_double(left), to_double(right));
            Ok(Value::Double(match op {
                BinaryOp::Add => l + r,
                BinaryOp::Subtract => l - r,
                BinaryOp::Multiply => l * r,
                BinaryOp::Divide if r == 0.0 => return Err(EvalError::DivisionByZero),
                BinaryOp::Divide => l / r,
                // pgbench's modulo is an integer operation: doubles are truncated first.
                BinaryOp::Modulo => return modulo(to_int(left)?, to_int(right)?).map(Value::Int),
            }))
        }
    }
}

fn modulo(left: i64, right: i64) -> Result<i64, EvalError> {
    match right {
        0 => Err(EvalError::DivisionByZero),
        // i64::MIN % -1 overflows in the hardware; the answer is 0.
        -1 => Ok(0),
        _ => Ok(left % right),
    }
}

fn call(function: Function, args: &[Value], rng: &mut SmallRng) -> Result<Value, EvalError> {
    let arg = |i: usize| args.get(i).copied().unwrap_or(Value::Int(0));
    match function {
        Function::Abs => match arg(0) {
            Value::Int(i) => i.checked_abs().map(Value::Int).ok_or(EvalError::IntegerOverflow),
            Value::Double(d) => Ok(Value::Double(d.abs())),
        },
        Function::Double => Ok(Value::Double(to_double(arg(0)))),
        Function::Int => to_int(arg(0)).map(Value::Int),
        Function::Greatest | Function::Least => {
            let greatest = function == Function::Greatest;
            if args.iter().any(|v| matches!(v, Value::Double(_))) {
                let doubles = args.iter().map(|v| to_double(*v));
                let folded = if greatest {
                    doubles.fold(f64::NEG_INFINITY, f64::max)
                } else {
                    doubles.fold(f64::INFINITY, f64::min)
                };
                Ok(Value::Double(folded))
            } else {
                let ints = args.iter().filter_map(|v| match v {
                    Value::Int(i) => Some(*i),
                    Value::Double(_) => None,
                });
                let folded = if greatest { ints.max() } else { ints.min() };
                Ok(Value::Int(folded.unwrap_or(0)))
            }
        }
        Function::Mod => modulo(to_int(arg(0))?, to_int(arg(1))?).map(Value::Int),
        Function::Pi => Ok(Value::Double(std::f64::consts::PI)),
        Function::Pow => Ok(Value::Double(to_double(arg(0)).powf(to_double(arg(1))))),
        Function::Sqrt => Ok(Value::Double(to_double(arg(0)).sqrt())),
        Function::Exp => Ok(Value::Double(to_double(arg(0)).exp())),
        Function::Ln => Ok(Value::Double(to_double(arg(0)).ln())),
        Function::Random => {
            let (lower, upper) = random_bounds(arg(0), arg(1))?;
            Ok(Value::Int(rng.random_range(lower..=upper)))
        }
        Function::RandomExponential => {
            let (lower, upper) = random_bounds(arg(0), arg(1))?;
            let parameter = to_double(arg(2));
            if parameter.is_nan() || parameter <= 0.0 {
                return Err(EvalError::ExponentialParameter(parameter));
            }
            Ok(Value::Int(exponential(rng, lower, upper, parameter)))
        }
        Function::RandomGaussian => {
            let (lower, upper) = random_bounds(arg(0), arg(1))?;
            let parameter = to_double(arg(2));
            if parameter.is_nan() || parameter < MIN_GAUSSIAN_PARAMETER {
                return Err(EvalError::GaussianParameter(parameter));
            }
            Ok(Value::Int(gaussian(rng, lower, upper, parameter)))
        }
        Function::RandomZipfian => {
            let (lower, upper) = random_bounds(arg(0), arg(1))?;
            let parameter = to_double(arg(2));
            if !(MIN_ZIPFIAN_PARAMETER..=MAX_ZIPFIAN_PARAMETER).contains(&parameter) {
                return Err(EvalError::ZipfianParameter(parameter));
            }
            Ok(Value::Int(zipfian(rng, lower, upper, parameter)))
        }
    }
}

/// The bounds of a `random*` call, checked as pgbench checks them: not
/// empty, and the range's size fits 64 bits.
fn random_bounds(lower: Value, upper: Value) -> Result<(i64, i64), EvalError> {
    let (lower, upper) = (to_int(lower)?, to_int(upper)?);
    if upper < lower {
        return Err(EvalError::EmptyRange { lower, upper });
    }
    match upper.checked_sub(lower).and_then(|size| size.checked_add(1)) {
        Some(_) => Ok((lower, upper)),
        None => Err(EvalError::RangeTooLarge),
    }
}

/// pgbench's `getExponentialRand`: inverse transform of an exponential
/// density cut at `parameter`, so the first value of the range is drawn
/// `exp(parameter)` times as often as the last.
pub fn exponential(rng: &mut SmallRng, lower: i64, upper: i64, parameter: f64) -> i64 {
    let cut = (-parameter).exp();
    // random() is in [0, 1); uniform in (0, 1] keeps the log finite.
    let uniform = 1.0 - rng.random::<f64>();
    let draw = -(cut + (1.0 - cut) * uniform).ln() / parameter;
    offset_in_range(lower, upper, draw)
}

/// `lower + floor(size × draw)` for a draw in [0, 1), kept within the range
/// even where rounding of huge ranges would step past it.
fn offset_in_range(lower: i64, upper: i64, draw: f64) -> i64 {
    let size = (upper as i128 - lower as i128 + 1) as f64;
    lower.saturating_add((size * draw) as i64).min(upper)
}

/// pgbench's `getGaussianRand`: a standard normal draw kept within
/// ±`parameter`, mapped linearly onto the range.
pub fn gaussian(rng: &mut SmallRng, lower: i64, upper: i64, parameter: f64) -> i64 {
    let stdev = loop {
        let draw: f64 = StandardNormal.sample(rng);
        if (-parameter..parameter).contains(&draw) {
            break draw;
        }
    };
    let draw = (stdev + parameter) / (parameter * 2.0);
    offset_in_range(lower, upper, draw)
}

/// pgbench's `getZipfianRand`: Devroye's rejection method (Non-Uniform
/// Random Variate Generation, p. 550-551), so value k of the range is drawn
/// ((k+1)/k)^parameter times as often as k+1.
pub fn zipfian(rng: &mut SmallRng, lower: i64, upper: i64, parameter: f64) -> i64 {
    let n = (upper as i128 - lower as i128 + 1) as f64;
    if n <= 1.0 {
        return lower;
    }
    let b = 2f64.powf(parameter - 1.0);
    let x = loop {
        let u: f64 = rng.random();
        let v: f64 = rng.random();
        let x = u.powf(-1.0 / (parameter - 1.0)).floor();
        let t = (1.0 + 1.0 / x).powf(parameter - 1.0);
        // Reject draws too large for the range (u = 0 gives infinity).
        if v * x * (t - 1.0) / (b - 1.0) <= t / b && x <= n {
            break x;
        }
    };
    // x is in [1, n]: lower + (x - 1) cannot pass upper.
    lower + (x as i64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn no_variables(name: &str) -> Result<usize, UnsetVariable> {
        Err(UnsetVariable {
            name: name.to_string(),
            automatic: &[],
        })
    }

    fn eval(text: &str) -> Result<Value, EvalError> {
        let expr = parse(text, &mut no_variables).unwrap_or_else(|e| panic!("{text}: {e}"));
        expr.evaluate(&[], &mut SmallRng::seed_from_u64(1))
    }

    #[test]
    fn arithmetic_follows_pgbench() {
        assert_eq!(eval("1 + 2 * 3"), Ok(Value::Int(7)));
        assert_eq!(eval("(1 + 2) * 3"), Ok(Value::Int(9)));
        assert_eq!(eval("7 / 2"), Ok(Value::Int(3)));
        assert_eq!(eval("-7 / 2"), Ok(Value::Int(-3)), "truncates toward zero, as C");
        assert_eq!(eval("-7 % 3"), Ok(Value::Int(-1)));
        assert_eq!(eval("7.0 / 2"), Ok(Value::Double(3.5)));
        assert_eq!(eval("1e3 + 1"), Ok(Value::Double(1001.0)));
        assert_eq!(eval(".5 * 4"), Ok(Value::Double(2.0)));
        assert_eq!(eval("- (2 - 5)"), Ok(Value::Int(3)));
        assert_eq!(eval("7.9 % 3"), Ok(Value::Int(1)), "modulo truncates doubles first");
        assert_eq!(eval("100000 * 10"), Ok(Value::Int(1_000_000)));
    }

    #[test]
    fn arithmetic_errors_are_pgbench_errors() {
        assert_eq!(eval("1 / 0"), Err(EvalError::DivisionByZero));
        assert_eq!(eval("1.5 / 0"), Err(EvalError::DivisionByZero));
        assert_eq!(eval("5 % 0"), Err(EvalError::DivisionByZero));
        assert_eq!(eval("9223372036854775807 + 1"), Err(EvalError::IntegerOverflow));
        assert_eq!(eval("-9223372036854775807 - 1"), Ok(Value::Int(i64::MIN)));
        assert_eq!(eval("(-9223372036854775807 - 1) / -1"), Err(EvalError::IntegerOverflow));
        assert_eq!(eval("(-9223372036854775807 - 1) % -1"), Ok(Value::Int(0)));
        assert!(matches!(eval("int(1e30)"), Err(EvalError::NotAnInteger(_))));
    }

    #[test]
    fn functions_evaluate() {
        assert_eq!(eval("abs(-4)"), Ok(Value::Int(4)));
        assert_eq!(eval("abs(-4.5)"), Ok(Value::Double(4.5)));
        assert_eq!(eval("int(3.9)"), Ok(Value::Int(3)));
        assert_eq!(eval("int(-3.9)"), Ok(Value::Int(-3)));
        assert_eq!(eval("double(3)"), Ok(Value::Double(3.0)));
        assert_eq!(eval("greatest(1, 5, 3)"), Ok(Value::Int(5)));
        assert_eq!(eval("least(1, 5.5, 3)"), Ok(Value::Double(1.0)));
        assert_eq!(eval("mod(10, 4)"), Ok(Value::Int(2)));
        assert_eq!(eval("sqrt(16)"), Ok(Value::Double(4.0)));
        assert_eq!(eval("pow(2, 10)"), Ok(Value::Double(1024.0)));
        assert_eq!(
            eval("POWER(2, 3)"),
            Ok(Value::Double(8.0)),
            "names are case-insensitive"
        );
        assert_eq!(eval("ln(exp(2))"), Ok(Value::Double(2.0)));
        assert_eq!(eval("pi()"), Ok(Value::Double(std::f64::consts::PI)));
        assert_eq!(eval("random(5, 5)"), Ok(Value::Int(5)));
    }

    #[test]
    fn random_parameters_are_checked_as_pgbench_checks_them() {
        assert_eq!(
            eval("random(10, 1)"),
            Err(EvalError::EmptyRange { lower: 10, upper: 1 })
        );
        assert_eq!(
            eval("random(-9223372036854775807 - 1, 9223372036854775807)"),
            Err(EvalError::RangeTooLarge)
        );
        assert_eq!(
            eval("random_zipfian(1, 10, 1.0)"),
            Err(EvalError::ZipfianParameter(1.0))
        );
        assert_eq!(
            eval("random_zipfian(1, 10, 1001)"),
            Err(EvalError::ZipfianParameter(1001.0))
        );
        assert_eq!(
            eval("random_exponential(1, 10, 0)"),
            Err(EvalError::ExponentialParameter(0.0))
        );
        assert_eq!(
            eval("random_gaussian(1, 10, 1.5)"),
            Err(EvalError::GaussianParameter(1.5))
        );
    }

    #[test]
    fn variables_resolve_through_the_caller() {
        let mut lookup = |name: &str| match name {
            "scale" => Ok(0),
            "aid" => Ok(1),
            other => Err(UnsetVariable {
                name: other.to_string(),
                automatic: &["scale"],
            }),
        };
        let expr = parse("random(1, 100000 * :scale) + :aid", &mut lookup).unwrap();
        assert!(!expr.is_constant());
        let value = expr
            .evaluate(&[Value::Int(2), Value::Int(1_000_000)], &mut SmallRng::seed_from_u64(3))
            .unwrap();
        assert!(
            matches!(value, Value::Int(v) if (1_000_001..=1_200_000).contains(&v)),
            "{value}"
        );
        let error = parse("1 + :nope", &mut lookup).unwrap_err();
        assert_eq!(error.column, 5);
        assert!(error.reason.contains(":nope is used before any \\set"), "{error}");
        assert!(error.reason.ends_with("contend sets :scale by itself"), "{error}");
    }

    #[test]
    fn parse_errors_point_at_the_column_and_say_what_is_supported() {
        let error = parse("1 + ", &mut no_variables).unwrap_err();
        assert_eq!(error.column, 5, "{error}");
        let error = parse("1 < 2", &mut no_variables).unwrap_err();
        assert_eq!(error.column, 3);
        assert!(error.reason.contains("+ - * / %"), "{error}");
        let error = parse("hash(3)", &mut no_variables).unwrap_err();
        assert!(error.reason.contains("hash is not supported"), "{error}");
        let error = parse("random(1)", &mut no_variables).unwrap_err();
        assert!(error.reason.contains("random takes 2 arguments, not 1"), "{error}");
        let error = parse("(1 + 2", &mut no_variables).unwrap_err();
        assert!(error.reason.contains("expected `)`"), "{error}");
        let error = parse("1 2", &mut no_variables).unwrap_err();
        assert!(error.reason.contains("after a complete expression"), "{error}");
        let error = parse("99999999999999999999", &mut no_variables).unwrap_err();
        assert!(error.reason.contains("out of range"), "{error}");
    }

    /// Expressions built from pgbench's grammar, including huge constants.
    fn expression() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            // i64::MIN has no literal in pgbench either: -9223372036854775808 is -(2^63).
            (i64::MIN + 1..=i64::MAX).prop_map(|i| if i < 0 { format!("({i})") } else { i.to_string() }),
            (-1e6f64..1e6).prop_map(|d| format!("{d:.3}")),
            Just(":v".to_string()),
        ];
        leaf.prop_recursive(4, 32, 3, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop::sample::select(vec!["+", "-", "*", "/", "%"]),
                    inner.clone()
                )
                    .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
                inner.clone().prop_map(|e| format!("-{e}")),
                (
                    prop::sample::select(vec!["abs", "int", "double", "sqrt", "exp", "ln"]),
                    inner.clone()
                )
                    .prop_map(|(f, e)| format!("{f}({e})")),
                (
                    prop::sample::select(vec!["random", "pow", "mod", "greatest", "least"]),
                    inner.clone(),
                    inner.clone()
                )
                    .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
                (
                    prop::sample::select(vec!["random_zipfian", "random_exponential", "random_gaussian"]),
                    inner.clone(),
                    inner.clone(),
                    inner
                )
                    .prop_map(|(f, a, b, c)| format!("{f}({a}, {b}, {c})")),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text, &mut |_| Ok(0));
        }

        #[test]
        fn evaluating_any_expression_never_panics(text in expression(), v in proptest::prelude::any::<i64>(), seed in 0u64..1000) {
            let expr = parse(&text, &mut |_| Ok(0)).unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut rng = SmallRng::seed_from_u64(seed);
            let _ = expr.evaluate(&[Value::Int(v)], &mut rng);
        }

        #[test]
        fn random_functions_stay_within_their_bounds(lower in -1_000_000i64..1_000_000, size in 0i64..1_000_000, seed in 0u64..1000) {
            let upper = lower + size;
            let mut rng = SmallRng::seed_from_u64(seed);
            for draw in [
                exponential(&mut rng, lower, upper, 3.0),
                gaussian(&mut rng, lower, upper, 2.5),
                zipfian(&mut rng, lower, upper, 1.5),
            ] {
                proptest::prop_assert!((lower..=upper).contains(&draw), "{draw} outside [{lower}, {upper}]");
            }
            for (lower, upper) in [(i64::MIN, i64::MIN + size), (i64::MAX - size, i64::MAX)] {
                for draw in [
                    exponential(&mut rng, lower, upper, 3.0),
                    gaussian(&mut rng, lower, upper, 2.5),
                    zipfian(&mut rng, lower, upper, 1.5),
                ] {
                    proptest::prop_assert!((lower..=upper).contains(&draw), "{draw} outside [{lower}, {upper}]");
                }
            }
        }
    }

    /// Draws `n` values of a distribution over [1, range] and counts them.
    fn histogram(range: i64, n: usize, mut draw: impl FnMut(&mut SmallRng) -> i64) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut counts = vec![0; range as usize + 1];
        for _ in 0..n {
            let value = draw(&mut rng);
            assert!((1..=range).contains(&value), "{value} outside [1, {range}]");
            counts[value as usize] += 1;
        }
        counts
    }

    #[test]
    fn uniform_random_covers_the_range_evenly() {
        let counts = histogram(10, 100_000, |rng| {
            to_int(call(Function::Random, &[Value::Int(1), Value::Int(10)], rng).unwrap()).unwrap()
        });
        for count in &counts[1..] {
            assert!((9_500..10_500).contains(count), "{counts:?}");
        }
    }

    #[test]
    fn zipfian_draws_k_over_k_plus_1_to_the_parameter_as_often() {
        // pgbench's documentation: random_zipfian(1, …, 2.5) draws 1 about
        // (2/1)^2.5 = 5.66 times as often as 2, and 2 (3/2)^2.5 = 2.76 times
        // as often as 3.
        let counts = histogram(1000, 200_000, |rng| zipfian(rng, 1, 1000, 2.5));
        let ratio_1_2 = counts[1] as f64 / counts[2] as f64;
        let ratio_2_3 = counts[2] as f64 / counts[3] as f64;
        assert!((ratio_1_2 - 5.66).abs() < 0.3, "1/2: {ratio_1_2}");
        assert!((ratio_2_3 - 2.76).abs() < 0.2, "2/3: {ratio_2_3}");
        let tail: usize = counts[500..].iter().sum();
        assert!(tail > 0 && tail < 200, "a thin tail: {tail}");
    }

    #[test]
    fn zipfian_with_a_mild_parameter_still_stays_in_range() {
        let counts = histogram(50, 50_000, |rng| zipfian(rng, 1, 50, 1.001));
        assert!(counts[1] > counts[50], "{counts:?}");
        assert_eq!(zipfian(&mut SmallRng::seed_from_u64(1), 7, 7, 2.0), 7);
    }

    #[test]
    fn exponential_follows_its_cumulative_distribution() {
        // P(X <= lower + k - 1) = (1 - exp(-parameter * k / n)) / (1 - exp(-parameter)).
        let (n, parameter) = (100, 5.0);
        let counts = histogram(n, 200_000, |rng| exponential(rng, 1, n, parameter));
        for k in [1usize, 10, 20, 50] {
            let observed = counts[1..=k].iter().sum::<usize>() as f64 / 200_000.0;
            let expected = (1.0 - (-parameter * k as f64 / n as f64).exp()) / (1.0 - (-parameter).exp());
            assert!((observed - expected).abs() < 0.01, "k={k}: {observed} vs {expected}");
        }
    }

    #[test]
    fn gaussian_centres_on_the_middle_of_the_range() {
        let n = 100;
        let counts = histogram(n, 100_000, |rng| gaussian(rng, 1, n, 2.5));
        let mean = counts.iter().enumerate().map(|(v, c)| v * c).sum::<usize>() as f64 / 100_000.0;
        assert!((mean - 50.5).abs() < 0.5, "mean {mean}");
        // Within one standard deviation (parameter 2.5 → 20 values each
        // side of the middle): 0.6827 of a normal, renormalised for the cut at
        // ±2.5 (0.9876): 0.6913.
        let middle: usize = counts[31..=70].iter().sum();
        let share = middle as f64 / 100_000.0;
        assert!((share - 0.6913).abs() < 0.01, "share within ±1 sd: {share}");
    }
}
