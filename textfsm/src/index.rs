//! A template library's index (ntc-templates' `index` file): which templates parse a
//! platform's command, and how several templates for one command join into one table.
//!
//! The file is comma-separated: a header naming the columns (`Template, Hostname, Platform,
//! Command`), then one row per command; `#` starts a comment. Each column but `Template` is a
//! regular expression matched from the start of the attribute; in `Command`, `sh[[ow]]` means
//! `sh`, `sho` or `show`. The first row that matches wins. `Template` may list several files
//! separated by `:`; their rows are joined on the `Key` values of the first one that has any.

use crate::template::{Matcher, Opt, translate};
use crate::{Cell, Table, Template, TemplateError};

#[derive(Debug)]
struct Row {
    templates: Vec<String>,
    platform: Matcher,
    command: Matcher,
}

#[derive(Debug)]
pub struct Index {
    rows: Vec<Row>,
}

impl Index {
    /// Reads an index's text; errors name the line.
    pub fn new(text: &str) -> Result<Index, TemplateError> {
        let err = |line: usize, message: String| TemplateError { line, message };
        let mut header: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        for (n, l) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            let Some(h) = &header else {
                header = Some(cells.iter().map(|c| c.to_string()).collect());
                continue;
            };
            let column = |name: &str| -> Result<&str, TemplateError> {
                h.iter()
                    .position(|c| c == name)
                    .and_then(|i| cells.get(i).copied())
                    .ok_or_else(|| err(n, format!("no {name} column")))
            };
            let pattern = |name: &str, text: &str| -> Result<Matcher, TemplateError> {
                Matcher::new(&format!("^(?:{})", translate(&completion(text))))
                    .map_err(|e| err(n, format!("{name} {text:?}: {e}")))
            };
            // A Command pattern may hold commas; it is the last column.
            let command = if h.last().is_some_and(|c| c == "Command") {
                cells[h.len() - 1..].join(",")
            } else {
                column("Command")?.to_string()
            };
            rows.push(Row {
                templates: column("Template")?
                    .split(':')
                    .map(|t| t.trim().to_string())
                    .collect(),
                platform: pattern("Platform", column("Platform")?)?,
                command: pattern("Command", &command)?,
            });
        }
        if header.is_none() {
            return Err(err(0, "the index is empty".into()));
        }
        Ok(Index { rows })
    }

    /// Whether any row names templates for `platform`.
    pub fn has_platform(&self, platform: &str) -> bool {
        self.rows.iter().any(|r| r.platform.is_match(platform))
    }

    /// The template files that parse `command` on `platform`, if the index has them.
    pub fn find(&self, platform: &str, command: &str) -> Option<&[String]> {
        self.rows
            .iter()
            .find(|r| r.platform.is_match(platform) && r.command.is_match(command))
            .map(|r| r.templates.as_slice())
    }
}

/// `sh[[ow]]` → `sh(o(w)?)?`.
fn completion(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        out.push_str(&rest[..start]);
        let word: Vec<char> = rest[start + 2..start + 2 + len].chars().collect();
        out.push('(');
        out.push_str(
            &word
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("("),
        );
        out.push_str(&")?".repeat(word.len()));
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Parses `text` with each template in turn and joins their rows: a later template's new
/// columns go to the row whose key values match (by position when there are no keys).
pub fn parse_joined(templates: &[&Template], text: &str) -> Result<Table, crate::ParseError> {
    let mut keys: Vec<String> = Vec::new();
    let mut table = Table::default();
    for (i, t) in templates.iter().enumerate() {
        let next = t.parse(text)?;
        if keys.is_empty() {
            keys = t
                .values
                .iter()
                .filter(|v| v.has(Opt::Key))
                .map(|v| v.name.clone())
                .collect();
        }
        if i == 0 {
            table = next;
            continue;
        }
        join(&mut table, next, &keys);
    }
    Ok(table)
}

fn join(table: &mut Table, other: Table, keys: &[String]) {
    let new: Vec<usize> = (0..other.header.len())
        .filter(|&c| !table.header.contains(&other.header[c]))
        .collect();
    if new.is_empty() {
        return;
    }
    for &c in &new {
        table.header.push(other.header[c].clone());
    }
    for row in &mut table.rows {
        row.extend(new.iter().map(|_| Cell::Text(String::new())));
    }
    let width = table.header.len();
    let start = width - new.len();
    let col = |t: &Table, name: &str| t.header.iter().position(|h| h == name);
    if keys.is_empty() {
        for (row, o) in table.rows.iter_mut().zip(&other.rows) {
            for (j, &c) in new.iter().enumerate() {
                row[start + j] = o[c].clone();
            }
        }
        return;
    }
    let mine: Vec<Option<usize>> = keys.iter().map(|k| col(table, k)).collect();
    let theirs: Vec<Option<usize>> = keys.iter().map(|k| col(&other, k)).collect();
    for row in &mut table.rows {
        let matching = other.rows.iter().find(|o| {
            mine.iter()
                .zip(&theirs)
                .all(|(a, b)| a.map(|a| &row[a]) == b.map(|b| &o[b]))
        });
        if let Some(o) = matching {
            for (j, &c) in new.iter().enumerate() {
                row[start + j] = o[c].clone();
            }
        }
    }
}
