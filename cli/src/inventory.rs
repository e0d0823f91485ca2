//! Inventory files for `netpulse bulk`: YAML or CSV, one entry per device.
//!
//! YAML is either a list of devices or `{defaults: {...}, devices: [...]}`; CSV has a header
//! row naming its columns, and separates several commands (or config lines) in one cell with
//! `;`. Fields: `host` (required), `port`, `username`, `password_env` (the name of an
//! environment variable holding the password), `password`, `secret_env`, `credential_profile`
//! or `vault_path` (credentials the agents resolve, in place of a password), `device_type`,
//! `commands`, `config`. A field left out takes the default, then the command line's value.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u32>,
    pub username: Option<String>,
    /// Prefer `password_env`: a password in a file is as safe as the file.
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub secret_env: Option<String>,
    /// A profile of the agents' --credential-profiles-dir.
    pub credential_profile: Option<String>,
    /// A Vault/OpenBao KV v2 secret under the `secret` mount.
    pub vault_path: Option<String>,
    pub device_type: Option<String>,
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub config: Vec<String>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Inventory {
    pub defaults: Entry,
    pub devices: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum YamlInventory {
    List(Vec<Entry>),
    WithDefaults {
        #[serde(default)]
        defaults: Entry,
        devices: Vec<Entry>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Csv,
}

impl Format {
    /// From the file name: `.csv` is CSV, anything else YAML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Yaml,
        }
    }
}

pub fn load(path: &Path, format: Option<Format>) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the inventory {}", path.display()))?;
    let inv = match format.unwrap_or_else(|| Format::of(path)) {
        Format::Yaml => parse_yaml(&text),
        Format::Csv => parse_csv(&text),
    }
    .with_context(|| format!("inventory {}", path.display()))?;
    if inv.devices.is_empty() {
        bail!("inventory {} lists no device", path.display());
    }
    for (i, d) in inv.devices.iter().enumerate() {
        if d.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
            bail!("inventory {}: device {} has no host", path.display(), i + 1);
        }
    }
    Ok(inv)
}

fn parse_yaml(text: &str) -> anyhow::Result<Inventory> {
    Ok(
        match serde_yaml::from_str::<YamlInventory>(text).context(
            "expected a list of devices or {defaults: ..., devices: [...]}; device fields: host, \
         port, username, password_env, password, secret_env, credential_profile, vault_path, device_type, commands, config",
        )? {
            YamlInventory::List(devices) => Inventory {
                defaults: Entry::default(),
                devices,
            },
            YamlInventory::WithDefaults { defaults, devices } => Inventory { defaults, devices },
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    host: String,
    #[serde(default)]
    port: Option<u32>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    credential_profile: Option<String>,
    #[serde(default)]
    vault_path: Option<String>,
    #[serde(default)]
    device_type: Option<String>,
    #[serde(default)]
    commands: Option<String>,
    #[serde(default)]
    config: Option<String>,
}

fn parse_csv(text: &str) -> anyhow::Result<Inventory> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut devices = Vec::new();
    for (i, row) in r.deserialize::<CsvRow>().enumerate() {
        let row = row.with_context(|| {
            format!(
                "row {}: columns are host, port, username, password_env, password, \
                 secret_env, credential_profile, vault_path, device_type, commands, config",
                i + 1
            )
        })?;
        let split = |cell: Option<String>| -> Vec<String> {
            cell.unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let some = |s: Option<String>| s.filter(|s| !s.is_empty());
        devices.push(Entry {
            host: Some(row.host),
            port: row.port,
            username: some(row.username),
            password: some(row.password),
            password_env: some(row.password_env),
            secret_env: some(row.secret_env),
            credential_profile: some(row.credential_profile),
            vault_path: some(row.vault_path),
            device_type: some(row.device_type),
            commands: split(row.commands),
            config: split(row.config),
        });
    }
    Ok(Inventory {
        defaults: Entry::default(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_defaults_and_csv_give_the_same_devices() {
        let yaml = "defaults:\n  username: admin\n  device_type: cisco_ios\ndevices:\n  - host: r1\n    port: 2201\n  - host: r2\n    commands: [show clock, show version]\n";
        let y = parse_yaml(yaml).unwrap();
        assert_eq!(y.defaults.username.as_deref(), Some("admin"));
        assert_eq!(y.devices.len(), 2);
        assert_eq!(y.devices[0].port, Some(2201));
        let csv = "host,port,commands\nr1,2201,\nr2,,show clock; show version\n";
        let c = parse_csv(csv).unwrap();
        assert_eq!(c.devices[0].host, y.devices[0].host);
        assert_eq!(c.devices[0].port, y.devices[0].port);
        assert_eq!(c.devices[1].commands, y.devices[1].commands);
        assert!(parse_yaml("- host: r1\n  colour: red\n").is_err());
        assert!(parse_csv("host,colour\nr1,red\n").is_err());
    }
}
