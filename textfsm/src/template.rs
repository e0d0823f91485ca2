//! Reading a template: the `Value` lines, then states of rules, checked as the reference
//! implementation checks them, and the rules' patterns compiled (see `translate`).

use regex::{Regex, RegexSet};

use crate::TemplateError;

const MAX_NAME: usize = 48;
const OPTIONS: [&str; 5] = ["Filldown", "Fillup", "Key", "List", "Required"];
const LINE_OPS: [&str; 3] = ["Continue", "Next", "Error"];
const RECORD_OPS: [&str; 4] = ["Clear", "Clearall", "Record", "NoRecord"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opt {
    Filldown,
    Fillup,
    Key,
    List,
    Required,
}

#[derive(Debug)]
pub(crate) struct ValueDef {
    pub name: String,
    /// In the order written: the reference implementation runs them in that order.
    pub options: Vec<Opt>,
    /// A `List` value whose pattern has named groups of its own: each item is those groups.
    pub nested: Option<Regex>,
}

impl ValueDef {
    pub fn has(&self, o: Opt) -> bool {
        self.options.contains(&o)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineOp {
    Next,
    Continue,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordOp {
    NoRecord,
    Record,
    Clear,
    ClearAll,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Stay,
    State(usize),
    End,
    Eof,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    Fast(Regex),
    Fancy(fancy_regex::Regex),
}

impl Matcher {
    /// `pattern` with `regex` when it can, else with `fancy-regex` (lookaround, backreferences).
    pub fn new(pattern: &str) -> Result<Matcher, String> {
        match Regex::new(pattern) {
            Ok(re) => Ok(Matcher::Fast(re)),
            Err(_) => fancy_regex::Regex::new(pattern)
                .map(Matcher::Fancy)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn is_match(&self, s: &str) -> bool {
        match self {
            Matcher::Fast(re) => re.is_match(s),
            Matcher::Fancy(re) => re.is_match(s).unwrap_or(false),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub line: usize,
    pub matcher: Matcher,
    /// (value index, capture group index) for each group named after a value.
    pub assigns: Vec<(usize, usize)>,
    pub line_op: LineOp,
    pub record_op: RecordOp,
    pub next: Next,
    /// The `Error` action's message.
    pub message: Option<String>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub rules: Vec<Rule>,
    /// Every rule's pattern at once, when all are plain `regex` patterns.
    pub set: Option<RegexSet>,
}

/// A compiled template. Immutable: parse with [`Template::parse`] as often as needed.
#[derive(Debug)]
pub struct Template {
    pub(crate) values: Vec<ValueDef>,
    /// `Start` first.
    pub(crate) states: Vec<State>,
    pub(crate) has_eof: bool,
}

/// A state as written: its name, the line after it, and its rules with their line numbers.
type RawState<'a> = (String, usize, Vec<(usize, &'a str)>);

fn err(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        line,
        message: message.into(),
    }
}

fn is_comment(l: &str) -> bool {
    l.trim_start().starts_with('#')
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

impl Template {
    /// Compiles a template's text.
    pub fn new(text: &str) -> Result<Template, TemplateError> {
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let mut i = 0;
        let mut values: Vec<ValueDef> = Vec::new();
        let mut patterns: Vec<(String, String)> = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            i += 1;
            if l.is_empty() {
                break;
            }
            if is_comment(l) {
                continue;
            }
            if !l.starts_with("Value ") {
                return Err(err(
                    i,
                    if values.is_empty() {
                        "no Value definitions found".to_string()
                    } else {
                        "expected a blank line after the last Value".to_string()
                    },
                ));
            }
            let (def, pattern) = value(i, l)?;
            if values.iter().any(|v| v.name == def.name) {
                return Err(err(i, format!("Value {:?} is declared twice", def.name)));
            }
            patterns.push((def.name.clone(), pattern));
            values.push(def);
        }
        // States: a name line, then its rules up to a blank line.
        let mut raw: Vec<RawState> = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            i += 1;
            if l.is_empty() || is_comment(l) {
                continue;
            }
            let reserved = LINE_OPS.contains(&l) || RECORD_OPS.contains(&l);
            if !is_word(l) || l.len() > MAX_NAME || reserved {
                return Err(err(i, format!("invalid state name {l:?}")));
            }
            if raw.iter().any(|(n, _, _)| n == l) {
                return Err(err(i, format!("state {l:?} is declared twice")));
            }
            let mut rules = Vec::new();
            while i < lines.len() {
                let r = lines[i];
                i += 1;
                if r.is_empty() {
                    break;
                }
                if is_comment(r) {
                    continue;
                }
                if !(r.starts_with(" ^") || r.starts_with("  ^") || r.starts_with("\t^")) {
                    return Err(err(
                        i,
                        "a rule starts with one or two spaces or a tab, then '^'",
                    ));
                }
                rules.push((i, r));
            }
            raw.push((l.to_string(), i, rules));
        }
        if !raw.iter().any(|(n, _, _)| n == "Start") {
            return Err(err(0, "no Start state"));
        }
        for reserved in ["End", "EOF"] {
            if raw.iter().any(|(n, _, r)| n == reserved && !r.is_empty()) {
                return Err(err(0, format!("the {reserved} state must have no rules")));
            }
        }
        let has_eof = raw.iter().any(|(n, _, _)| n == "EOF");
        raw.retain(|(n, _, _)| n != "End" && n != "EOF");
        // Start first; the others keep their order.
        let start = raw
            .iter()
            .position(|(n, _, _)| n == "Start")
            .expect("checked");
        let s = raw.remove(start);
        raw.insert(0, s);
        let names: Vec<String> = raw.iter().map(|(n, _, _)| n.clone()).collect();
        let mut states = Vec::new();
        for (name, _, rules) in &raw {
            let rules = rules
                .iter()
                .map(|(n, r)| rule(*n, r, &patterns, &values, &names, name))
                .collect::<Result<Vec<_>, _>>()?;
            let fast: Option<Vec<&str>> = rules
                .iter()
                .map(|r| match &r.matcher {
                    Matcher::Fast(re) => Some(re.as_str()),
                    Matcher::Fancy(_) => None,
                })
                .collect();
            let set = fast.and_then(|p| RegexSet::new(p).ok());
            states.push(State { rules, set });
        }
        Ok(Template {
            values,
            states,
            has_eof,
        })
    }

    /// The value names, in the order of a row's cells.
    pub fn header(&self) -> Vec<&str> {
        self.values.iter().map(|v| v.name.as_str()).collect()
    }
}

/// One `Value [Options] Name (regex)` line; tokens are split on single spaces, as the
/// reference implementation splits them.
fn value(n: usize, l: &str) -> Result<(ValueDef, String), TemplateError> {
    let tokens: Vec<&str> = l.split(' ').collect();
    if tokens.len() < 3 {
        return Err(err(n, "a Value line needs at least a name and a pattern"));
    }
    let (opts, name, regex) = if tokens[2].starts_with('(') {
        ("", tokens[1], tokens[2..].join(" "))
    } else {
        (tokens[1], tokens[2], tokens[3..].join(" "))
    };
    let mut options = Vec::new();
    for o in opts
        .split(',')
        .filter(|o| !opts.is_empty() || !o.is_empty())
    {
        let opt = match o {
            "Filldown" => Opt::Filldown,
            "Fillup" => Opt::Fillup,
            "Key" => Opt::Key,
            "List" => Opt::List,
            "Required" => Opt::Required,
            _ => {
                return Err(err(
                    n,
                    format!("unknown option {o:?}; allowed: {}", OPTIONS.join(", ")),
                ));
            }
        };
        if options.contains(&opt) {
            return Err(err(n, format!("option {o} given twice")));
        }
        options.push(opt);
    }
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(err(n, format!("a Value name is 1..={MAX_NAME} characters")));
    }
    if !(regex.starts_with('(') && regex.ends_with(')')) {
        return Err(err(
            n,
            format!("Value {name:?} must be within one \"()\" pair"),
        ));
    }
    let translated = translate(&regex);
    let compiled = Regex::new(&translated);
    if compiled.is_err() && fancy_regex::Regex::new(&translated).is_err() {
        return Err(err(n, format!("Value {name:?}: invalid pattern {regex}")));
    }
    // Matched from the start, as the reference's `re.match` does.
    let nested = match compiled {
        Ok(re)
            if options.contains(&Opt::List)
                && re.captures_len() > 2
                && re.capture_names().flatten().next().is_some() =>
        {
            Regex::new(&format!("^(?:{translated})")).ok()
        }
        _ => None,
    };
    // The value's own group becomes the named one that rules substitute.
    let pattern = format!("(?P<{name}>{}", &regex[1..]);
    Ok((
        ValueDef {
            name: name.to_string(),
            options,
            nested,
        },
        pattern,
    ))
}

fn rule(
    n: usize,
    text: &str,
    patterns: &[(String, String)],
    values: &[ValueDef],
    states: &[String],
    state: &str,
) -> Result<Rule, TemplateError> {
    let text = text.trim();
    // The action follows the last " ->".
    let (matched, action) = match text
        .rfind("->")
        .filter(|&i| i > 0 && text[..i].ends_with(|c: char| c.is_whitespace()))
    {
        Some(i) => (&text[..i - 1], Some(&text[i + 2..])),
        None => (text, None),
    };
    let source = substitute(matched, patterns).ok_or_else(|| {
        err(
            n,
            format!(
                "invalid or unknown value in {matched:?} (use ${{Name}} for a value, $$ for $)"
            ),
        )
    })?;
    let anchored = format!("^(?:{})", translate(&source));
    let matcher = Matcher::new(&anchored)
        .map_err(|e| err(n, format!("invalid regular expression {source:?}: {e}")))?;
    let group_names: Vec<Option<String>> = match &matcher {
        Matcher::Fast(re) => re.capture_names().map(|g| g.map(String::from)).collect(),
        Matcher::Fancy(re) => re.capture_names().map(|g| g.map(String::from)).collect(),
    };
    let assigns = group_names
        .iter()
        .enumerate()
        .filter_map(|(gi, g)| {
            let g = g.as_deref()?;
            values.iter().position(|v| v.name == g).map(|vi| (vi, gi))
        })
        .collect();
    let (line_op, record_op, target) = match action {
        None => (LineOp::Next, RecordOp::NoRecord, None),
        Some(a) => actions(n, a)?,
    };
    let (next, message) = match (line_op, target) {
        (LineOp::Error, t) => (Next::Stay, t.map(|t| t.trim_matches('"').to_string())),
        (LineOp::Continue, Some(t)) => {
            return Err(err(n, format!("Continue cannot change state (to {t:?})")));
        }
        (_, None) => (Next::Stay, None),
        (_, Some(t)) if t == "End" => (Next::End, None),
        (_, Some(t)) if t == "EOF" => (Next::Eof, None),
        (_, Some(t)) => match states.iter().position(|s| *s == t) {
            Some(i) => (Next::State(i), None),
            None => {
                return Err(err(
                    n,
                    format!("state {t:?}, named in state {state:?}, is not declared"),
                ));
            }
        },
    };
    Ok(Rule {
        line: n,
        matcher,
        assigns,
        line_op,
        record_op,
        next,
        message,
    })
}

/// `Next.Record State`, `Record State`, `Continue`, `State`, `Error "message"`, ...
fn actions(n: usize, a: &str) -> Result<(LineOp, RecordOp, Option<String>), TemplateError> {
    let a = a.trim();
    let bad = || err(n, format!("badly formatted action {a:?}"));
    let (op, rest) = match a.find(char::is_whitespace) {
        Some(i) => (&a[..i], Some(a[i..].trim())),
        None => (a, None),
    };
    let target = match rest {
        Some(r) if is_word(r) || (r.len() >= 2 && r.starts_with('"') && r.ends_with('"')) => {
            Some(r.to_string())
        }
        Some(_) => return Err(bad()),
        None => None,
    };
    let line_op = |s: &str| match s {
        "Next" => Some(LineOp::Next),
        "Continue" => Some(LineOp::Continue),
        "Error" => Some(LineOp::Error),
        _ => None,
    };
    let record_op = |s: &str| match s {
        "NoRecord" => Some(RecordOp::NoRecord),
        "Record" => Some(RecordOp::Record),
        "Clear" => Some(RecordOp::Clear),
        "Clearall" => Some(RecordOp::ClearAll),
        _ => None,
    };
    if let Some((l, r)) = op.split_once('.') {
        return match (line_op(l), record_op(r)) {
            (Some(l), Some(r)) => Ok((l, r, target)),
            _ => Err(bad()),
        };
    }
    if let Some(l) = line_op(op) {
        return Ok((l, RecordOp::NoRecord, target));
    }
    if let Some(r) = record_op(op) {
        return Ok((LineOp::Next, r, target));
    }
    // Only a new state.
    if target.is_none() && is_word(op) {
        return Ok((LineOp::Next, RecordOp::NoRecord, Some(op.to_string())));
    }
    Err(bad())
}

/// `$Name`, `${Name}` and `$$` as Python's `string.Template` reads them; `None` for a `$`
/// that starts neither, or a name that is not a value.
fn substitute(text: &str, patterns: &[(String, String)]) -> Option<String> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}')?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return None;
        }
        let (_, p) = patterns.iter().find(|(n, _)| n == name)?;
        out.push_str(p);
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

/// A Python `re` pattern in the form the `regex` crate reads the same way: `\<` and `\>` are
/// literal brackets there (word boundaries here), `\Z` is the end, a `{` that does not start a
/// counted repetition is literal, `{,n}` means `{0,n}`, and inside a class `[` and the set
/// operators `&&`, `--`, `~~` are literal.
pub(crate) fn translate(py: &str) -> String {
    let c: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' && i + 1 < c.len() {
            match c[i + 1] {
                '<' | '>' => out.push(c[i + 1]),
                'Z' if !in_class => out.push_str(r"\z"),
                n => {
                    out.push('\\');
                    out.push(n);
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            match ch {
                ']' => in_class = false,
                '[' => {
                    out.push_str(r"\[");
                    i += 1;
                    continue;
                }
                '&' | '-' | '~' if c.get(i + 1) == Some(&ch) => {
                    out.push('\\');
                    out.push(ch);
                    out.push('\\');
                    out.push(ch);
                    i += 2;
                    continue;
                }
                _ => {}
            }
            out.push(ch);
            i += 1;
            continue;
        }
        match ch {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                // A `]` (after an optional `^`) first in a class is literal.
                if c.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if c.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                continue;
            }
            '{' => {
                let close = c[i..].iter().position(|&x| x == '}').map(|p| i + p);
                let body: Option<String> = close.map(|e| c[i + 1..e].iter().collect());
                match body.as_deref() {
                    Some(b) if counted(b) => {
                        if let Some(m) = b.strip_prefix(',') {
                            out.push_str(&format!("{{0,{m}}}"));
                        } else {
                            out.push('{');
                            out.push_str(b);
                            out.push('}');
                        }
                        i = close.expect("found") + 1;
                    }
                    _ => {
                        out.push_str(r"\{");
                        i += 1;
                    }
                }
                continue;
            }
            '}' => out.push_str(r"\}"),
            _ => out.push(ch),
        }
        i += 1;
    }
    if out.contains("(?") {
        out = unrepeat_lookaround(&out);
    }
    out
}

/// Python accepts a repeated lookaround (`(?<=x)+`), which neither regex engine here does: a
/// `+` repeats the assertion to no effect, and a `*` or `?` makes it always hold.
fn unrepeat_lookaround(p: &str) -> String {
    let c: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < c.len() {
        let opens = ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .find(|o| c[i..].starts_with(&o.chars().collect::<Vec<_>>()));
        if opens.is_none() || (i > 0 && c[i - 1] == '\\') {
            out.push(c[i]);
            i += 1;
            continue;
        }
        // The group's end: nesting, escapes and classes respected.
        let (mut depth, mut j, mut class) = (0usize, i, false);
        while j < c.len() {
            match c[j] {
                '\\' => j += 1,
                '[' if !class => class = true,
                ']' if class => class = false,
                '(' if !class => depth += 1,
                ')' if !class => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let group: String = c[i..=j.min(c.len() - 1)].iter().collect();
        match c.get(j + 1) {
            Some('+') => {
                out.push_str(&group);
                i = j + 2;
            }
            Some('*') | Some('?') => i = j + 2,
            _ => {
                out.push_str(&group);
                i = j + 1;
            }
        }
    }
    out
}

/// `n`, `n,`, `n,m` or `,m`: the inside of a counted repetition.
fn counted(b: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|x| x.is_ascii_digit());
    match b.split_once(',') {
        None => digits(b),
        Some((lo, hi)) => {
            (digits(lo) || lo.is_empty())
                && (hi.is_empty() || digits(hi))
                && !(lo.is_empty() && hi.is_empty())
        }
    }
}
