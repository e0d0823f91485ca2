//! TextFSM: a template of named values and states of line rules that turns a command's screen
//! output into rows (Google's format, which ntc-templates' library of templates uses).
//!
//! The engine follows the reference implementation's semantics, including its corner cases
//! (a list value that a rule's optional group missed gets the text `None`; a record whose
//! values are all unset is not emitted), so that templates written against it give the same
//! rows. Speed: each state's rules are matched together by one `RegexSet` pass per line, and
//! only the rules that matched are run for their captures; rules that need lookaround or
//! backreferences (which `regex` does not have) fall back to `fancy-regex`.

mod engine;
mod index;
mod library;
mod template;

/// Where ntc-templates' templates and index are installed (by `scripts/deps` and the image).
pub const NTC_TEMPLATES_DIR: &str =
    "/usr/local/share/netpulse/ntc-templates/ntc_templates/templates";

pub use index::{Index, parse_joined};
pub use library::{Library, LibraryError, Source};
pub use template::Template;

/// One value of a row: text, or for a `List` value, its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    List(Vec<Item>),
}

/// One item of a `List` value: the text matched, or, when the value's pattern has named groups
/// of its own, those groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Text(String),
    Groups(Vec<(String, String)>),
}

/// What a template produced: the value names, and one row of cells per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The rows as JSON objects keyed by lower-case value names (the form ntc-templates'
    /// users know: `[{"interface": "Gi0/1", ...}]`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let keys: Vec<String> = self.header.iter().map(|h| h.to_lowercase()).collect();
        J::Array(
            self.rows
                .iter()
                .map(|row| {
                    J::Object(
                        keys.iter()
                            .zip(row)
                            .map(|(k, c)| (k.clone(), cell_json(c)))
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

fn cell_json(c: &Cell) -> serde_json::Value {
    use serde_json::Value as J;
    match c {
        Cell::Text(s) => J::String(s.clone()),
        Cell::List(items) => J::Array(
            items
                .iter()
                .map(|i| match i {
                    Item::Text(s) => J::String(s.clone()),
                    Item::Groups(g) => J::Object(
                        g.iter()
                            .map(|(k, v)| (k.clone(), J::String(v.clone())))
                            .collect(),
                    ),
                })
                .collect(),
        ),
    }
}

/// A template that cannot be used: the line (1-based, 0 for the whole file) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template line {line}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

/// The template's `Error` action fired on a line of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (template line {rule_line}, input line {input_line}: {input:?})")]
pub struct ParseError {
    pub message: String,
    pub rule_line: usize,
    pub input_line: usize,
    pub input: String,
}

#[cfg(test)]
mod tests;
