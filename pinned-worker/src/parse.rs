//! Parsing a command's output into rows with TextFSM (`CommandSpec.parse`), here in the worker
//! so that the manager and the agent spend nothing on it. Templates come from ntc-templates'
//! directory (by its index: the platform's name there and the command) or the operator's
//! templates directory (by file name), or inline; each is compiled once per process and kept,
//! a named one until its file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use netpulse_model::Parse;
use netpulse_textfsm::{Index, Table, Template};
use prost_types::{ListValue, Struct, Value, value::Kind};

/// Where ntc-templates is installed by `scripts/deps` and the container image.
pub const DEFAULT_NTC_DIR: &str = "/usr/local/share/netpulse/ntc-templates/ntc_templates/templates";
/// Inline templates kept compiled; beyond this the cache starts again.
const MAX_INLINE: usize = 64;

/// A compiled template, or why it did not compile (kept too: it is not retried until changed).
type Compiled = Result<Arc<Template>, String>;

#[derive(Default)]
struct Parsers {
    ntc_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    index: Option<Result<Arc<Index>, String>>,
    /// By path, with the file's modification time when it was read.
    files: HashMap<PathBuf, (Option<SystemTime>, Compiled)>,
    inline: HashMap<String, Compiled>,
}

static PARSERS: OnceLock<Mutex<Parsers>> = OnceLock::new();

fn parsers() -> &'static Mutex<Parsers> {
    PARSERS.get_or_init(|| {
        Mutex::new(Parsers {
            ntc_dir: DEFAULT_NTC_DIR.into(),
            ..Default::default()
        })
    })
}

/// Sets the directories; call before the first parse (later calls change nothing cached).
pub fn configure(ntc_dir: Option<PathBuf>, templates_dir: Option<PathBuf>) {
    let mut p = parsers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = ntc_dir {
        p.ntc_dir = d;
    }
    p.templates_dir = templates_dir;
}

/// Parses `output` of `command` on the platform named `platform` in ntc-templates.
pub fn parse(
    how: &Parse,
    platform: &str,
    command: &str,
    output: &str,
) -> Result<ListValue, String> {
    let templates = parsers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .templates(how, platform, command)?;
    let refs: Vec<&Template> = templates.iter().map(|t| t.as_ref()).collect();
    let table = netpulse_textfsm::parse_joined(&refs, output).map_err(|e| e.to_string())?;
    Ok(rows(&table))
}

impl Parsers {
    fn templates(
        &mut self,
        how: &Parse,
        platform: &str,
        command: &str,
    ) -> Result<Vec<Arc<Template>>, String> {
        match how {
            Parse::Inline(text) => {
                if self.inline.len() >= MAX_INLINE && !self.inline.contains_key(text) {
                    self.inline.clear();
                }
                let t = self
                    .inline
                    .entry(text.clone())
                    .or_insert_with(|| {
                        Template::new(text)
                            .map(Arc::new)
                            .map_err(|e| format!("inline template: {e}"))
                    })
                    .clone()?;
                Ok(vec![t])
            }
            Parse::Named(name) => {
                let Some(dir) = self.templates_dir.clone() else {
                    return Err(format!(
                        "template {name:?} was named, but the agent has no templates directory \
                         (--templates-dir)"
                    ));
                };
                Ok(vec![self.file(&dir.join(name), name)?])
            }
            Parse::NtcIndex => {
                let index = self.index()?;
                let Some(names) = index.find(platform, command) else {
                    return Err(format!(
                        "ntc-templates has no template for {command:?} on {platform}"
                    ));
                };
                let dir = self.ntc_dir.clone();
                names.iter().map(|n| self.file(&dir.join(n), n)).collect()
            }
        }
    }

    fn index(&mut self) -> Result<Arc<Index>, String> {
        let dir = self.ntc_dir.clone();
        self.index
            .get_or_insert_with(|| {
                let path = dir.join("index");
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "cannot read ntc-templates' index {}: {e} (scripts/deps installs it; \
                         --ntc-templates-dir names another)",
                        path.display()
                    )
                })?;
                Index::new(&text)
                    .map(Arc::new)
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .clone()
    }

    /// A template file, compiled again only when it changed.
    fn file(&mut self, path: &Path, name: &str) -> Result<Arc<Template>, String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if let Some((when, t)) = self.files.get(path)
            && *when == modified
            && modified.is_some()
        {
            return t.clone();
        }
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("template {name}: {e}"))
            .and_then(|text| {
                Template::new(&text)
                    .map(Arc::new)
                    .map_err(|e| format!("template {name}: {e}"))
            });
        self.files.insert(path.to_path_buf(), (modified, t.clone()));
        t
    }
}

/// The rows as the public API carries them: one object per record.
fn rows(table: &Table) -> ListValue {
    let json = table.to_json();
    match to_value(&json).kind {
        Some(Kind::ListValue(l)) => l,
        _ => ListValue::default(),
    }
}

fn to_value(j: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match j {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_named_and_missing_templates() {
        let dir = tempfile::tempdir().unwrap();
        let t = "Value NAME (\\S+)\n\nStart\n  ^name ${NAME} -> Record\n";
        std::fs::write(dir.path().join("names.textfsm"), t).unwrap();
        let mut p = Parsers {
            ntc_dir: dir.path().join("nowhere"),
            templates_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let got = p
            .templates(&Parse::Named("names.textfsm".into()), "x", "y")
            .unwrap();
        let table = got[0].parse("name a\nname b\n").unwrap();
        assert_eq!(
            serde_json::to_string(&table.to_json()).unwrap(),
            r#"[{"name":"a"},{"name":"b"}]"#
        );
        // A changed file is compiled again.
        std::fs::write(
            dir.path().join("names.textfsm"),
            t.replace("name ", "host "),
        )
        .unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("names.textfsm"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        let got = p
            .templates(&Parse::Named("names.textfsm".into()), "x", "y")
            .unwrap();
        assert_eq!(got[0].parse("host c\n").unwrap().rows.len(), 1);
        let e = p
            .templates(&Parse::Named("nope.textfsm".into()), "x", "y")
            .unwrap_err();
        assert!(e.starts_with("template nope.textfsm:"), "{e}");
        let e = p
            .templates(&Parse::NtcIndex, "cisco_ios", "show clock")
            .unwrap_err();
        assert!(e.contains("cannot read ntc-templates' index"), "{e}");
        let e = p
            .templates(&Parse::Inline("Value X\n".into()), "x", "y")
            .unwrap_err();
        assert!(e.starts_with("inline template: template line 1"), "{e}");
        let rows = rows(&got[0].parse("host c\n").unwrap());
        assert_eq!(rows.values.len(), 1);
    }
}
