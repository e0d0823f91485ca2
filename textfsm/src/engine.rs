//! Running a template over text, line by line, with the reference implementation's value
//! semantics (see `Slot`).

use crate::template::{LineOp, Matcher, Next, Opt, RecordOp, Rule, Template};
use crate::{Cell, Item, ParseError, Table};

/// A value while parsing. `value` is the last text assigned (`None`: unset, which a rule's
/// optional group that did not take part also gives); `list` the items of a `List` value;
/// `kept` what `Filldown` restores after a record.
#[derive(Clone, Debug, Default)]
struct Slot {
    value: Option<String>,
    list: Vec<Item>,
    kept: Option<String>,
}

struct Run<'t> {
    t: &'t Template,
    slots: Vec<Slot>,
    rows: Vec<Vec<Cell>>,
}

impl Template {
    /// Parses `text` into rows.
    pub fn parse(&self, text: &str) -> Result<Table, ParseError> {
        let mut run = Run {
            t: self,
            slots: vec![Slot::default(); self.values.len()],
            rows: Vec::new(),
        };
        let mut state = 0;
        let mut stopped = None;
        for (n, line) in lines(text).enumerate() {
            match run.line(state, line, n + 1)? {
                Next::Stay => {}
                Next::State(s) => state = s,
                end => {
                    stopped = Some(end);
                    break;
                }
            }
        }
        // The implicit EOF records what is pending, unless the template declares an EOF state
        // or a rule ended at End.
        if stopped != Some(Next::End) && !self.has_eof {
            run.record();
        }
        Ok(Table {
            header: self.values.iter().map(|v| v.name.clone()).collect(),
            rows: run.rows,
        })
    }
}

impl Run<'_> {
    /// Runs one line through the state's rules; returns where to go.
    fn line(&mut self, state: usize, line: &str, n: usize) -> Result<Next, ParseError> {
        let st = &self.t.states[state];
        match &st.set {
            Some(set) => {
                let hits = set.matches(line);
                for i in hits.iter() {
                    if let Some(next) = self.apply(&st.rules[i], line, n)? {
                        return Ok(next);
                    }
                }
            }
            None => {
                for r in &st.rules {
                    if let Some(next) = self.apply(r, line, n)? {
                        return Ok(next);
                    }
                }
            }
        }
        Ok(Next::Stay)
    }

    /// Applies `r` if it matches; `Some(next)` when the line is done with.
    fn apply(&mut self, r: &Rule, line: &str, n: usize) -> Result<Option<Next>, ParseError> {
        let matched = match &r.matcher {
            Matcher::Fast(re) => match re.captures(line) {
                None => return Ok(None),
                Some(c) => {
                    for &(v, g) in &r.assigns {
                        self.assign(v, c.get(g).map(|m| m.as_str()));
                    }
                    true
                }
            },
            Matcher::Fancy(re) => match re.captures(line).ok().flatten() {
                None => return Ok(None),
                Some(c) => {
                    for &(v, g) in &r.assigns {
                        self.assign(v, c.get(g).map(|m| m.as_str()));
                    }
                    true
                }
            },
        };
        debug_assert!(matched);
        match r.record_op {
            RecordOp::NoRecord => {}
            RecordOp::Record => self.record(),
            RecordOp::Clear => self.clear(),
            RecordOp::ClearAll => {
                for s in &mut self.slots {
                    *s = Slot::default();
                }
            }
        }
        match r.line_op {
            LineOp::Continue => Ok(None),
            LineOp::Next => Ok(Some(r.next.clone())),
            LineOp::Error => Err(ParseError {
                message: r
                    .message
                    .clone()
                    .unwrap_or_else(|| "the template's Error action".into()),
                rule_line: r.line,
                input_line: n,
                input: line.to_string(),
            }),
        }
    }

    fn assign(&mut self, v: usize, text: Option<&str>) {
        let def = &self.t.values[v];
        self.slots[v].value = text.map(String::from);
        for o in &def.options {
            match o {
                Opt::Filldown => self.slots[v].kept = self.slots[v].value.clone(),
                Opt::Fillup => {
                    let Some(val) = self.slots[v].value.clone().filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    for row in self.rows.iter_mut().rev() {
                        if filled(&row[v]) {
                            break;
                        }
                        row[v] = Cell::Text(val.clone());
                    }
                }
                Opt::List => {
                    let item = match (&def.nested, text) {
                        (Some(re), Some(t)) => re.captures(t).map(|c| {
                            Item::Groups(
                                re.capture_names()
                                    .enumerate()
                                    .filter_map(|(i, name)| {
                                        let name = name?;
                                        let v = c.get(i).map_or("None", |m| m.as_str());
                                        Some((name.to_string(), v.to_string()))
                                    })
                                    .collect(),
                            )
                        }),
                        _ => None,
                    };
                    // A group that took no part is kept as the reference keeps it: "None".
                    let item = item.unwrap_or_else(|| Item::Text(text.unwrap_or("None").into()));
                    self.slots[v].list.push(item);
                }
                Opt::Key | Opt::Required => {}
            }
        }
    }

    /// Appends the pending record, unless a Required value is unset or every value is.
    fn record(&mut self) {
        let mut row = Vec::with_capacity(self.slots.len());
        let mut any = false;
        for (def, slot) in self.t.values.iter().zip(&self.slots) {
            // The options' checks run in their written order: Required before List looks at
            // the last item assigned, after it at the list.
            let mut cell: Option<Cell> = slot.value.clone().map(Cell::Text);
            for o in &def.options {
                match o {
                    Opt::List => cell = Some(Cell::List(slot.list.clone())),
                    Opt::Required if !cell.as_ref().is_some_and(filled) => {
                        self.clear();
                        return;
                    }
                    _ => {}
                }
            }
            let cell = match cell {
                None => Cell::Text(String::new()),
                Some(Cell::List(l)) if l.is_empty() => Cell::List(l),
                Some(c) => {
                    any = true;
                    c
                }
            };
            row.push(cell);
        }
        if !any {
            return;
        }
        self.rows.push(row);
        self.clear();
    }

    /// After a record: unset every value, but `Filldown` ones keep theirs.
    fn clear(&mut self) {
        for (def, slot) in self.t.values.iter().zip(&mut self.slots) {
            slot.value = None;
            if def.has(Opt::Filldown) {
                slot.value = slot.kept.clone();
            } else {
                slot.list.clear();
            }
        }
    }
}

fn filled(c: &Cell) -> bool {
    match c {
        Cell::Text(s) => !s.is_empty(),
        Cell::List(l) => !l.is_empty(),
    }
}

/// Lines as Python's `str.splitlines` cuts them.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((i, c)) = rest.char_indices().find(|&(_, c)| {
            matches!(
                c,
                '\n' | '\r'
                    | '\x0b'
                    | '\x0c'
                    | '\x1c'
                    | '\x1d'
                    | '\x1e'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        }) else {
            let line = rest;
            rest = "";
            return Some(line);
        };
        let line = &rest[..i];
        let mut after = i + c.len_utf8();
        if c == '\r' && rest[after..].starts_with('\n') {
            after += 1;
        }
        rest = &rest[after..];
        Some(line)
    })
}
