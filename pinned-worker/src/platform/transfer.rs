//! How a platform moves files: the protocol it speaks by default, the command that prints a
//! file's MD5, and the one that shows the free space where a file would go.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::definition::DefinitionError;

/// `[transfer]` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransferDef {
    /// "scp" (the default) or "sftp".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Prints the MD5 of `{path}` (the first 32 hex digits of its output are taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_command: Option<String>,
    /// Shows the free space of `{dir}`, the remote path up to its last '/' or ':'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_command: Option<String>,
    /// Finds the free bytes in free_command's output: a group named `bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_pattern: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Scp,
    Sftp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Scp => "scp",
            Protocol::Sftp => "sftp",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TransferRules {
    pub protocol: Protocol,
    pub hash_command: Option<String>,
    pub free: Option<(String, Regex)>,
}

impl Default for TransferRules {
    fn default() -> Self {
        TransferRules {
            protocol: Protocol::Scp,
            hash_command: None,
            free: None,
        }
    }
}

/// The directory part of a remote path: through its last '/' or ':' ("flash:", "/tmp/").
pub fn dir_of(path: &str) -> &str {
    path.rfind(['/', ':']).map_or("", |i| &path[..=i])
}

impl TransferRules {
    pub fn hash_command(&self, path: &str) -> Option<String> {
        self.hash_command
            .as_ref()
            .map(|c| c.replace("{path}", path))
    }

    pub fn free_command(&self, path: &str) -> Option<String> {
        self.free
            .as_ref()
            .map(|(c, _)| c.replace("{dir}", dir_of(path)))
    }

    /// The free bytes the free command's output shows.
    pub fn free_bytes(&self, output: &str) -> Option<u64> {
        let (_, re) = self.free.as_ref()?;
        re.captures(output)?["bytes"].parse().ok()
    }
}

/// The first MD5 (32 hex digits standing alone) in a hash command's output.
pub fn md5_in(output: &str) -> Option<String> {
    output
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 32)
        .map(str::to_ascii_lowercase)
}

pub fn compile(file: &str, def: Option<&TransferDef>) -> Result<TransferRules, DefinitionError> {
    let err = |field: &str, message: String| DefinitionError {
        file: file.to_string(),
        field: format!("transfer.{field}"),
        message,
    };
    let Some(d) = def else {
        return Ok(TransferRules::default());
    };
    let protocol = match d.protocol.as_deref() {
        None | Some("scp") => Protocol::Scp,
        Some("sftp") => Protocol::Sftp,
        Some(other) => {
            return Err(err(
                "protocol",
                format!("must be scp or sftp, got {other:?}"),
            ));
        }
    };
    let line = |field: &str, s: &str, needs: &str| {
        if s.trim().is_empty() || s.contains(['\n', '\r']) || !s.contains(needs) {
            Err(err(
                field,
                format!("must be one line holding {needs}, got {s:?}"),
            ))
        } else {
            Ok(s.to_string())
        }
    };
    let hash_command = d
        .hash_command
        .as_deref()
        .map(|c| line("hash_command", c, "{path}"))
        .transpose()?;
    let free = match (&d.free_command, &d.free_pattern) {
        (None, None) => None,
        (Some(c), Some(p)) => {
            let re = Regex::new(p).map_err(|e| err("free_pattern", e.to_string()))?;
            if !re.capture_names().any(|n| n == Some("bytes")) {
                return Err(err("free_pattern", "needs a group named bytes".into()));
            }
            Some((line("free_command", c, "{dir}")?, re))
        }
        _ => {
            return Err(err(
                "free_command",
                "free_command and free_pattern go together".into(),
            ));
        }
    };
    Ok(TransferRules {
        protocol,
        hash_command,
        free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_free_space_and_directories_are_read_from_device_output() {
        assert_eq!(
            md5_in("verify /md5 (flash:/a.bin) = 9E107D9D372BB6826BD81D3542A419D6\n"),
            Some("9e107d9d372bb6826bd81d3542a419d6".into())
        );
        assert_eq!(
            md5_in("9e107d9d372bb6826bd81d3542a419d6  /tmp/a\n")
                .unwrap()
                .len(),
            32
        );
        assert_eq!(md5_in("%Error opening flash:/x (No such file)"), None);
        assert_eq!(dir_of("flash:/a.bin"), "flash:/");
        assert_eq!(dir_of("bootflash:a.bin"), "bootflash:");
        assert_eq!(dir_of("a.bin"), "");
        let def = TransferDef {
            protocol: Some("sftp".into()),
            hash_command: Some("md5sum {path}".into()),
            free_command: Some("df -PB1 {dir}".into()),
            free_pattern: Some(r"(?m)^\S+\s+\d+\s+\d+\s+(?P<bytes>\d+)\s".into()),
        };
        let r = compile("x.toml", Some(&def)).unwrap();
        assert_eq!(r.protocol, Protocol::Sftp);
        assert_eq!(r.free_command("/tmp/a").unwrap(), "df -PB1 /tmp/");
        let df =
            "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 100 40 60 40% /\n";
        assert_eq!(r.free_bytes(df), Some(60));
        let bad = TransferDef {
            hash_command: Some("md5sum".into()),
            ..def.clone()
        };
        assert!(
            compile("x.toml", Some(&bad))
                .unwrap_err()
                .message
                .contains("{path}")
        );
        let bad = TransferDef {
            protocol: Some("ftp".into()),
            ..def
        };
        assert_eq!(
            compile("x.toml", Some(&bad)).unwrap_err().field,
            "transfer.protocol"
        );
    }
}
