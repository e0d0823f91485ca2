//! A library of templates: ntc-templates' directory (found through its index by platform
//! and command), an operator's directory (by file name), and inline texts. Each template is
//! compiled once and kept, a file until it changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::{Index, Table, Template, parse_joined};

/// Inline templates kept compiled; beyond this the cache starts again.
const MAX_INLINE: usize = 64;

/// Which template parses an output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The template(s) ntc-templates' index names for the platform and command.
    NtcIndex,
    /// A file of the operator's directory.
    Named(String),
    /// The template's text.
    Inline(String),
}

/// Why an output was not parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    /// No template for it: none in the index, or no such file.
    #[error("{0}")]
    NotFound(String),
    /// A directory is not there or not readable.
    #[error("{0}")]
    Unavailable(String),
    /// A template that does not compile, or whose Error action fired.
    #[error("{0}")]
    Invalid(String),
}

/// A compiled template, or why it did not compile (kept too: not retried until changed).
type Compiled = Result<Arc<Template>, LibraryError>;

#[derive(Debug, Default)]
pub struct Library {
    ntc_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    index: Option<Result<Arc<Index>, LibraryError>>,
    /// By path, with the file's modification time when it was read.
    files: HashMap<PathBuf, (Option<SystemTime>, Compiled)>,
    inline: HashMap<String, Compiled>,
}

impl Library {
    pub fn new(ntc_dir: PathBuf, templates_dir: Option<PathBuf>) -> Library {
        Library {
            ntc_dir,
            templates_dir,
            ..Default::default()
        }
    }

    /// Parses `output` of `command` on `platform` (the platform's name in ntc-templates).
    pub fn parse(
        &mut self,
        how: &Source,
        platform: &str,
        command: &str,
        output: &str,
    ) -> Result<Table, LibraryError> {
        let templates = self.templates(how, platform, command)?;
        let refs: Vec<&Template> = templates.iter().map(|t| t.as_ref()).collect();
        parse_joined(&refs, output).map_err(|e| LibraryError::Invalid(e.to_string()))
    }

    /// The compiled templates for `how`, in the order their rows join.
    pub fn templates(
        &mut self,
        how: &Source,
        platform: &str,
        command: &str,
    ) -> Result<Vec<Arc<Template>>, LibraryError> {
        match how {
            Source::Inline(text) => {
                if self.inline.len() >= MAX_INLINE && !self.inline.contains_key(text) {
                    self.inline.clear();
                }
                let t = self
                    .inline
                    .entry(text.clone())
                    .or_insert_with(|| {
                        Template::new(text)
                            .map(Arc::new)
                            .map_err(|e| LibraryError::Invalid(format!("inline template: {e}")))
                    })
                    .clone()?;
                Ok(vec![t])
            }
            Source::Named(name) => {
                let Some(dir) = self.templates_dir.clone() else {
                    return Err(LibraryError::Unavailable(format!(
                        "template {name:?} was named, but there is no templates directory \
                         (--templates-dir)"
                    )));
                };
                Ok(vec![self.file(&dir.join(name), name)?])
            }
            Source::NtcIndex => {
                let index = self.index()?;
                let Some(names) = index.find(platform, command) else {
                    return Err(LibraryError::NotFound(format!(
                        "ntc-templates has no template for {command:?} on {platform}"
                    )));
                };
                let dir = self.ntc_dir.clone();
                names.iter().map(|n| self.file(&dir.join(n), n)).collect()
            }
        }
    }

    fn index(&mut self) -> Result<Arc<Index>, LibraryError> {
        let dir = self.ntc_dir.clone();
        self.index
            .get_or_insert_with(|| {
                let path = dir.join("index");
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    LibraryError::Unavailable(format!(
                        "cannot read ntc-templates' index {}: {e} (scripts/deps installs it; \
                         --ntc-templates-dir names another)",
                        path.display()
                    ))
                })?;
                Index::new(&text)
                    .map(Arc::new)
                    .map_err(|e| LibraryError::Invalid(format!("{}: {e}", path.display())))
            })
            .clone()
    }

    /// A template file, compiled again only when it changed.
    fn file(&mut self, path: &Path, name: &str) -> Compiled {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if let Some((when, t)) = self.files.get(path)
            && *when == modified
            && modified.is_some()
        {
            return t.clone();
        }
        let t = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(LibraryError::NotFound(format!("template {name}: {e}")))
            }
            Err(e) => Err(LibraryError::Unavailable(format!("template {name}: {e}"))),
            Ok(text) => Template::new(&text)
                .map(Arc::new)
                .map_err(|e| LibraryError::Invalid(format!("template {name}: {e}"))),
        };
        self.files.insert(path.to_path_buf(), (modified, t.clone()));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_named_and_missing_templates() {
        let dir = tempfile::tempdir().unwrap();
        let t = "Value NAME (\\S+)\n\nStart\n  ^name ${NAME} -> Record\n";
        std::fs::write(dir.path().join("names.textfsm"), t).unwrap();
        let mut lib = Library::new(dir.path().join("nowhere"), Some(dir.path().to_path_buf()));
        let named = Source::Named("names.textfsm".into());
        let table = lib.parse(&named, "x", "y", "name a\nname b\n").unwrap();
        assert_eq!(
            serde_json::to_string(&table.to_json()).unwrap(),
            r#"[{"name":"a"},{"name":"b"}]"#
        );
        // A changed file is compiled again.
        let path = dir.path().join("names.textfsm");
        std::fs::write(&path, t.replace("name ", "host ")).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            lib.parse(&named, "x", "y", "host c\n").unwrap().rows.len(),
            1
        );
        let e = lib
            .templates(&Source::Named("nope.textfsm".into()), "x", "y")
            .unwrap_err();
        assert!(matches!(e, LibraryError::NotFound(_)), "{e}");
        let e = lib
            .templates(&Source::NtcIndex, "cisco_ios", "show clock")
            .unwrap_err();
        assert!(
            matches!(&e, LibraryError::Unavailable(m) if m.contains("cannot read ntc-templates' index")),
            "{e}"
        );
        let e = lib
            .templates(&Source::Inline("Value X\n".into()), "x", "y")
            .unwrap_err();
        assert!(
            matches!(&e, LibraryError::Invalid(m) if m.starts_with("inline template: template line 1")),
            "{e}"
        );
    }
}
