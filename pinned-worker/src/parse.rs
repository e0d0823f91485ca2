//! Parsing a command's output into rows with TextFSM (`CommandSpec.parse`), here in the worker
//! so that the manager and the agent spend nothing on it. The templates are the process's
//! library (`netpulse_textfsm::Library`): ntc-templates' directory, found through its index by
//! the platform's name there and the command, the operator's directory by file name, or
//! inline; each compiled once per process and kept, a file until it changes.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use netpulse_model::Parse;
use netpulse_textfsm::Library;
use prost_types::ListValue;

pub use netpulse_textfsm::NTC_TEMPLATES_DIR as DEFAULT_NTC_DIR;

static LIBRARY: OnceLock<Mutex<Library>> = OnceLock::new();

/// Sets the directories; call before the first parse (later calls are ignored).
pub fn configure(ntc_dir: Option<PathBuf>, templates_dir: Option<PathBuf>) {
    let _ = LIBRARY.set(Mutex::new(Library::new(
        ntc_dir.unwrap_or_else(|| DEFAULT_NTC_DIR.into()),
        templates_dir,
    )));
}

/// Parses `output` of `command` on the platform named `platform` in ntc-templates.
pub fn parse(
    how: &Parse,
    platform: &str,
    command: &str,
    output: &str,
) -> Result<ListValue, String> {
    let library = LIBRARY.get_or_init(|| Mutex::new(Library::new(DEFAULT_NTC_DIR.into(), None)));
    let table = library
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .parse(&how.source(), platform, command, output)
        .map_err(|e| e.to_string())?;
    Ok(netpulse_model::rows(&table))
}
