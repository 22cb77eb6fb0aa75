//! Arithmetic expressions of the pipeline spec (`project: [{name: price, expr: "price *
//! 0.908"}]`): their grammar, the parser and the syntax tree.
//!
//! This module owns the *syntax* only; it is pure code with no I/O. The validator
//! ([`crate::validate`]) reports parse errors with the spec path of the expression, and the
//! worker compiles the tree into its evaluator (`rivulet_worker::transform`), so both read
//! the same grammar. What an expression means at run time (integer or float arithmetic,
//! missing fields) is the worker's.
//!
//! **Grammar.** Usual precedence (`*` and `/` bind tighter than `+` and `-`, unary minus
//! tighter than both) and left associativity (`a - b - c` is `(a - b) - c`); whitespace
//! between tokens is ignored:
//!
//! ```text
//! expr    = term  (("+" | "-") term)*
//! term    = unary (("*" | "/") unary)*
//! unary   = "-" unary | primary
//! primary = number | field | "(" expr ")"
//! number  = digits ["." digits]                      e.g. 100, 0.908
//! field   = name ("." segment)*                      e.g. price, bid.price
//!         | "@timestamp" | "@partition" | "@offset"  Kafka metadata
//! name    = (letter | "_") (letter | digit | "_")*
//! segment = (letter | digit | "_")+
//! ```
//!
//! An integer literal too large for an `i64` is read as a float. Expressions nest at most
//! [`MAX_DEPTH`] levels, so evaluating one never runs deep recursion.

use std::fmt;

/// The deepest an expression may nest (parentheses, unary minus and chained operators all
/// count).
pub const MAX_DEPTH: usize = 64;

/// The metadata fields an expression may read (the numeric ones).
pub const METADATA_FIELDS: &[&str] = &["@timestamp", "@partition", "@offset"];

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// An integer literal.
    Int(i64),
    /// A decimal literal (or an integer literal too large for an `i64`).
    Float(f64),
    /// A field path as written: `bid.price` or `@timestamp`.
    Field(String),
    /// Unary minus.
    Neg(Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(&self) -> char {
        match self {
            BinOp::Add => '+',
            BinOp::Sub => '-',
            BinOp::Mul => '*',
            BinOp::Div => '/',
        }
    }
}

impl Expr {
    /// Every field path the expression reads, in order of appearance (repeats included).
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Int(_) | Expr::Float(_) => {}
            Expr::Field(path) => out.push(path),
            Expr::Neg(e) => e.collect_fields(out),
            Expr::Binary(_, lhs, rhs) => {
                lhs.collect_fields(out);
                rhs.collect_fields(out);
            }
        }
    }
}

/// Fully parenthesized, so the structure shows: `a + b * 2` is `(a + (b * 2))`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(i) => write!(f, "{i}"),
            Expr::Float(x) => write!(f, "{x:?}"),
            Expr::Field(path) => f.write_str(path),
            Expr::Neg(e) => write!(f, "(-{e})"),
            Expr::Binary(op, lhs, rhs) => write!(f, "({lhs} {} {rhs})", op.symbol()),
        }
    }
}

/// Why an expression does not parse. Columns count characters from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("the expression is empty")]
    Empty,
    #[error("unexpected `{found}` at column {column}: expected {expected}")]
    Unexpected {
        found: String,
        column: usize,
        expected: &'static str,
    },
    #[error("unexpected end of the expression at column {column}: expected {expected}")]
    UnexpectedEnd {
        column: usize,
        expected: &'static str,
    },
    #[error("unclosed `(` at column {column}")]
    Unclosed { column: usize },
    #[error("bad number `{text}` at column {column}: {reason}")]
    BadNumber {
        text: String,
        column: usize,
        reason: &'static str,
    },
    #[error("bad field path `{text}` at column {column}: expected a name after `.`")]
    BadField { text: String, column: usize },
    #[error(
        "unknown metadata field `{name}` at column {column}: an expression can read \
         `@timestamp`, `@partition` and `@offset`"
    )]
    UnknownMetadata { name: String, column: usize },
    #[error("the expression nests deeper than {MAX_DEPTH} levels at column {column}")]
    TooDeep { column: usize },
}

impl ExprError {
    /// The column (from 1) the error points at; `None` for an empty expression.
    pub fn column(&self) -> Option<usize> {
        match self {
            ExprError::Empty => None,
            ExprError::Unexpected { column, .. }
            | ExprError::UnexpectedEnd { column, .. }
            | ExprError::Unclosed { column }
            | ExprError::BadNumber { column, .. }
            | ExprError::BadField { column, .. }
            | ExprError::UnknownMetadata { column, .. }
            | ExprError::TooDeep { column } => Some(*column),
        }
    }
}

/// Parses an expression (see the module documentation for the grammar).
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let mut parser = Parser {
        lexer: Lexer {
            chars: text.chars().collect(),
            pos: 0,
        },
        peeked: None,
        nesting: 0,
    };
    if parser.peek()?.kind == Kind::End {
        return Err(ExprError::Empty);
    }
    let node = parser.expr()?;
    let next = parser.next()?;
    match next.kind {
        Kind::End => Ok(node.expr),
        _ => Err(unexpected(
            &next,
            "an operator (`+`, `-`, `*`, `/`) or the end",
        )),
    }
}

const OPERAND: &str = "a number, a field, `-` or `(`";

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Int(i64),
    Float(f64),
    Field(String),
    Op(BinOp),
    LParen,
    RParen,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    /// The token as written (for error messages).
    text: String,
    /// Column of its first character, from 1.
    column: usize,
}

fn unexpected(token: &Token, expected: &'static str) -> ExprError {
    match token.kind {
        Kind::End => ExprError::UnexpectedEnd {
            column: token.column,
            expected,
        },
        _ => ExprError::Unexpected {
            found: token.text.clone(),
            column: token.column,
            expected,
        },
    }
}

struct Lexer {
    chars: Vec<char>,
    /// Index of the next character (so its column is `pos + 1`).
    pos: usize,
}

impl Lexer {
    fn peek_char(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek_char(0).is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn text_from(&self, start: usize) -> String {
        self.chars[start..self.pos].iter().collect()
    }

    fn next_token(&mut self) -> Result<Token, ExprError> {
        self.take_while(char::is_whitespace);
        let start = self.pos;
        let column = start + 1;
        let Some(c) = self.peek_char(0) else {
            return Ok(Token {
                kind: Kind::End,
                text: String::new(),
                column,
            });
        };
        let kind = match c {
            '+' | '-' | '*' | '/' | '(' | ')' => {
                self.pos += 1;
                match c {
                    '+' => Kind::Op(BinOp::Add),
                    '-' => Kind::Op(BinOp::Sub),
                    '*' => Kind::Op(BinOp::Mul),
                    '/' => Kind::Op(BinOp::Div),
                    '(' => Kind::LParen,
                    _ => Kind::RParen,
                }
            }
            c if c.is_ascii_digit() => self.number(start)?,
            c if c == '_' || c.is_alphabetic() => self.field(start)?,
            '@' => {
                self.pos += 1;
                self.take_while(is_name_char);
                let name = self.text_from(start);
                if !METADATA_FIELDS.contains(&name.as_str()) {
                    return Err(ExprError::UnknownMetadata { name, column });
                }
                Kind::Field(name)
            }
            other => {
                return Err(ExprError::Unexpected {
                    found: other.to_string(),
                    column,
                    expected: "a number, a field, an operator or a parenthesis",
                })
            }
        };
        Ok(Token {
            kind,
            text: self.text_from(start),
            column,
        })
    }

    fn number(&mut self, start: usize) -> Result<Kind, ExprError> {
        self.take_while(|c| c.is_ascii_digit());
        let mut decimal = false;
        if self.peek_char(0) == Some('.') {
            self.pos += 1;
            if !self.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
                return Err(ExprError::BadNumber {
                    text: self.text_from(start),
                    column: start + 1,
                    reason: "expected a digit after `.`",
                });
            }
            self.take_while(|c| c.is_ascii_digit());
            decimal = true;
        }
        let text = self.text_from(start);
        if !decimal {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Kind::Int(i));
            }
        }
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Kind::Float(x)),
            _ => Err(ExprError::BadNumber {
                text,
                column: start + 1,
                reason: "too large",
            }),
        }
    }

    fn field(&mut self, start: usize) -> Result<Kind, ExprError> {
        self.take_while(is_name_char);
        while self.peek_char(0) == Some('.') {
            self.pos += 1;
            if !self.peek_char(0).is_some_and(is_name_char) {
                return Err(ExprError::BadField {
                    text: self.text_from(start),
                    column: start + 1,
                });
            }
            self.take_while(is_name_char);
        }
        Ok(Kind::Field(self.text_from(start)))
    }
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A subtree and its depth.
struct Node {
    expr: Expr,
    depth: usize,
}

/// Recursive descent, one function per grammar rule.
struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
    /// Parentheses and unary minus being parsed (bounds the parser's recursion).
    nesting: usize,
}

impl Parser {
    fn peek(&mut self) -> Result<&Token, ExprError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(token))
    }

    fn next(&mut self) -> Result<Token, ExprError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    /// `expr = term (("+" | "-") term)*`
    fn expr(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.term()?;
        loop {
            let (op, column) = match self.peek()? {
                Token {
                    kind: Kind::Op(op @ (BinOp::Add | BinOp::Sub)),
                    column,
                    ..
                } => (*op, *column),
                _ => return Ok(lhs),
            };
            self.next()?;
            let rhs = self.term()?;
            lhs = binary(op, lhs, rhs, column)?;
        }
    }

    /// `term = unary (("*" | "/") unary)*`
    fn term(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.unary()?;
        loop {
            let (op, column) = match self.peek()? {
                Token {
                    kind: Kind::Op(op @ (BinOp::Mul | BinOp::Div)),
                    column,
                    ..
                } => (*op, *column),
                _ => return Ok(lhs),
            };
            self.next()?;
            let rhs = self.unary()?;
            lhs = binary(op, lhs, rhs, column)?;
        }
    }

    /// `unary = "-" unary | primary`
    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek()?.kind != Kind::Op(BinOp::Sub) {
            return self.primary();
        }
        let minus = self.next()?;
        self.enter(minus.column)?;
        let operand = self.unary()?;
        self.nesting -= 1;
        let depth = operand.depth + 1;
        if depth > MAX_DEPTH {
            return Err(ExprError::TooDeep {
                column: minus.column,
            });
        }
        Ok(Node {
            expr: Expr::Neg(Box::new(operand.expr)),
            depth,
        })
    }

    /// `primary = number | field | "(" expr ")"`
    fn primary(&mut self) -> Result<Node, ExprError> {
        let token = self.next()?;
        let expr = match token.kind {
            Kind::Int(i) => Expr::Int(i),
            Kind::Float(x) => Expr::Float(x),
            Kind::Field(path) => Expr::Field(path),
            Kind::LParen => {
                self.enter(token.column)?;
                let inner = self.expr()?;
                self.nesting -= 1;
                let close = self.next()?;
                return match close.kind {
                    Kind::RParen => Ok(inner),
                    Kind::End => Err(ExprError::Unclosed {
                        column: token.column,
                    }),
                    _ => Err(unexpected(&close, "an operator or `)`")),
                };
            }
            Kind::Op(_) | Kind::RParen | Kind::End => return Err(unexpected(&token, OPERAND)),
        };
        Ok(Node { expr, depth: 1 })
    }

    /// Enters a parenthesis or a unary minus at `column`.
    fn enter(&mut self, column: usize) -> Result<(), ExprError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(ExprError::TooDeep { column });
        }
        Ok(())
    }
}

fn binary(op: BinOp, lhs: Node, rhs: Node, column: usize) -> Result<Node, ExprError> {
    let depth = lhs.depth.max(rhs.depth) + 1;
    if depth > MAX_DEPTH {
        return Err(ExprError::TooDeep { column });
    }
    Ok(Node {
        expr: Expr::Binary(op, Box::new(lhs.expr), Box::new(rhs.expr)),
        depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fully parenthesized form of a valid expression.
    #[track_caller]
    fn shape(text: &str) -> String {
        parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .to_string()
    }

    #[track_caller]
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(e) => panic!("{text:?} parsed as {e}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn literals_and_fields() {
        assert_eq!(parse("100"), Ok(Expr::Int(100)));
        assert_eq!(parse("0.908"), Ok(Expr::Float(0.908)));
        assert_eq!(parse(" 2.50 "), Ok(Expr::Float(2.5)));
        assert_eq!(
            parse("99999999999999999999"),
            Ok(Expr::Float(99999999999999999999.0))
        );
        assert_eq!(parse("price"), Ok(Expr::Field("price".into())));
        assert_eq!(parse("bid.price"), Ok(Expr::Field("bid.price".into())));
        assert_eq!(parse("_a.b_2.3"), Ok(Expr::Field("_a.b_2.3".into())));
        assert_eq!(parse("dateTime"), Ok(Expr::Field("dateTime".into())));
        for meta in METADATA_FIELDS {
            assert_eq!(parse(meta), Ok(Expr::Field(meta.to_string())));
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(shape("price * 0.908"), "(price * 0.908)");
        assert_eq!(shape("a + b * c"), "(a + (b * c))");
        assert_eq!(shape("a * b + c"), "((a * b) + c)");
        assert_eq!(shape("a - b / c"), "(a - (b / c))");
        assert_eq!(shape("a / b - c * d"), "((a / b) - (c * d))");
    }

    #[test]
    fn left_associativity() {
        assert_eq!(shape("a - b - c"), "((a - b) - c)");
        assert_eq!(shape("a / b / c"), "((a / b) / c)");
        assert_eq!(shape("a - b + c"), "((a - b) + c)");
        assert_eq!(shape("a * b / c * d"), "(((a * b) / c) * d)");
    }

    #[test]
    fn unary_minus() {
        assert_eq!(shape("-a"), "(-a)");
        assert_eq!(shape("-a * b"), "((-a) * b)");
        assert_eq!(shape("a * -b"), "(a * (-b))");
        assert_eq!(shape("a - -b"), "(a - (-b))");
        assert_eq!(shape("--a"), "(-(-a))");
        assert_eq!(shape("-2.5"), "(-2.5)");
        assert_eq!(shape("-(a + b)"), "(-(a + b))");
    }

    #[test]
    fn parentheses() {
        assert_eq!(shape("(a + b) * c"), "((a + b) * c)");
        assert_eq!(shape("a - (b - c)"), "(a - (b - c))");
        assert_eq!(shape("((a))"), "a");
        assert_eq!(
            shape("(price*0.908)/(1+@offset)"),
            "((price * 0.908) / (1 + @offset))"
        );
    }

    #[test]
    fn fields_lists_every_reference() {
        let e = parse("(a.b + @timestamp) * a.b - 3").unwrap();
        assert_eq!(e.fields(), ["a.b", "@timestamp", "a.b"]);
        assert!(parse("1 + 2").unwrap().fields().is_empty());
    }

    #[test]
    fn errors_say_where_and_why() {
        assert_eq!(
            error("price * )"),
            "unexpected `)` at column 9: expected a number, a field, `-` or `(`"
        );
        assert_eq!(
            error("price *"),
            "unexpected end of the expression at column 8: expected a number, a field, `-` or `(`"
        );
        assert_eq!(
            error("price 2"),
            "unexpected `2` at column 7: expected an operator (`+`, `-`, `*`, `/`) or the end"
        );
        assert_eq!(
            error("a + b)"),
            "unexpected `)` at column 6: expected an operator (`+`, `-`, `*`, `/`) or the end"
        );
        assert_eq!(error("2 * (a + b"), "unclosed `(` at column 5");
        assert_eq!(
            error("(a b)"),
            "unexpected `b` at column 4: expected an operator or `)`"
        );
        assert_eq!(
            error("()"),
            "unexpected `)` at column 2: expected a number, a field, `-` or `(`"
        );
        assert_eq!(
            error("price % 2"),
            "unexpected `%` at column 7: expected a number, a field, an operator or a parenthesis"
        );
        assert_eq!(
            error("1. + a"),
            "bad number `1.` at column 1: expected a digit after `.`"
        );
        assert_eq!(
            error("x + bid."),
            "bad field path `bid.` at column 5: expected a name after `.`"
        );
        assert_eq!(
            error("a..b"),
            "bad field path `a.` at column 1: expected a name after `.`"
        );
        assert!(error("1 + @key").starts_with("unknown metadata field `@key` at column 5"));
        assert!(error("@").starts_with("unknown metadata field `@` at column 1"));
        assert_eq!(error(""), "the expression is empty");
        assert_eq!(error("   "), "the expression is empty");
        // Columns count characters, not bytes.
        assert_eq!(
            error("prix_é * )"),
            "unexpected `)` at column 10: expected a number, a field, `-` or `(`"
        );
        assert_eq!(
            error("a € b"),
            "unexpected `€` at column 3: expected a number, a field, an operator or a parenthesis"
        );
        let e = parse("a * (b + ").unwrap_err();
        assert_eq!(e.column(), Some(10));
        assert_eq!(ExprError::Empty.column(), None);
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(shape(&ok), "a");
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            parse(&deep),
            Err(ExprError::TooDeep {
                column: MAX_DEPTH + 1
            })
        );
        let minus = format!("{}a", "-".repeat(100_000));
        assert!(matches!(parse(&minus), Err(ExprError::TooDeep { .. })));
        let chain = vec!["a"; 100_000].join(" + ");
        assert!(matches!(parse(&chain), Err(ExprError::TooDeep { .. })));
        let chain = vec!["a"; MAX_DEPTH].join(" + ");
        assert_eq!(parse(&chain).unwrap().fields().len(), MAX_DEPTH);
        assert_eq!(
            parse(&format!("-({chain})")),
            Err(ExprError::TooDeep { column: 1 })
        );
    }
}
