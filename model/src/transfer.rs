//! A file transfer job: which way, over what, to which remote path, from which source.

use netpulse_proto::{api, worker};

use crate::error::{ModelError, invalid};

/// A staged file's id, `<node id>/f-<16 hex digits>`: the node is part of the id, so a
/// manager routes a job or a download to the node that holds the file without a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedId {
    pub node_id: String,
    pub file: String,
}

impl StagedId {
    pub fn parse(id: &str) -> Result<StagedId, ModelError> {
        let bad = || {
            invalid(format!(
                "a staged file id is <node id>/f-<16 hex digits> (from UploadFile or a GET's \
                 transfer.staged_file), got {id:?}"
            ))
        };
        let (node, file) = id.split_once('/').ok_or_else(bad)?;
        let hex = file.strip_prefix("f-").ok_or_else(bad)?;
        if node.is_empty()
            || node.len() > 128
            || node.contains(' ')
            || hex.len() != 16
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        Ok(StagedId {
            node_id: node.to_string(),
            file: file.to_string(),
        })
    }
}

impl std::fmt::Display for StagedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node_id, self.file)
    }
}

/// Where a PUT's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Staged(StagedId),
    /// Fetched by the agent; must hash to `sha256` (lower-case hex).
    Url {
        url: String,
        sha256: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    Put(Source),
    Get,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub direction: Direction,
    pub protocol: api::TransferProtocol,
    pub remote_path: String,
    pub overwrite: api::Overwrite,
    pub resume: bool,
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Transfer {
    pub fn from_wire(t: &api::FileTransfer) -> Result<Transfer, ModelError> {
        let protocol = api::TransferProtocol::try_from(t.protocol).map_err(|_| {
            invalid(format!(
                "transfer.protocol must be TRANSFER_PROTOCOL_SCP, _SFTP or unset (the \
                 platform's), got {}",
                t.protocol
            ))
        })?;
        let overwrite = match api::Overwrite::try_from(t.overwrite) {
            Ok(api::Overwrite::Unspecified) => api::Overwrite::IfDifferent,
            Ok(o) => o,
            Err(_) => {
                return Err(invalid(format!(
                    "transfer.overwrite must be OVERWRITE_IF_DIFFERENT, _ALWAYS or _NEVER, got {}",
                    t.overwrite
                )));
            }
        };
        // The path goes into device commands (scp, the hash, the free space): only characters
        // no shell or CLI reads as syntax.
        if t.remote_path.is_empty()
            || t.remote_path.len() > 1024
            || !t
                .remote_path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:+@=,~".contains(&b))
        {
            return Err(invalid(format!(
                "transfer.remote_path must be 1..=1024 of A-Z a-z 0-9 . _ - / : + @ = , ~, got {:?}",
                t.remote_path
            )));
        }
        let direction = match api::TransferDirection::try_from(t.direction) {
            Ok(api::TransferDirection::Put) => Direction::Put(match (&*t.staged_file, &*t.url) {
                (id, "") if !id.is_empty() => {
                    if !t.sha256.is_empty() {
                        return Err(invalid(
                            "transfer.sha256 goes with url; a staged file's hash is known",
                        ));
                    }
                    Source::Staged(StagedId::parse(id)?)
                }
                ("", url) if !url.is_empty() => {
                    if !(url.starts_with("http://") || url.starts_with("https://"))
                        || url.len() > 2048
                    {
                        return Err(invalid(format!(
                            "transfer.url must be an http:// or https:// URL of at most 2048 bytes, got {url:?}"
                        )));
                    }
                    let sha256 = t.sha256.to_ascii_lowercase();
                    if !is_sha256(&sha256) {
                        return Err(invalid(format!(
                            "transfer.sha256 must be the url's SHA-256, 64 hex digits, got {:?}",
                            t.sha256
                        )));
                    }
                    Source::Url {
                        url: url.to_string(),
                        sha256,
                    }
                }
                _ => {
                    return Err(invalid(
                        "a PUT needs exactly one of transfer.staged_file and transfer.url",
                    ));
                }
            }),
            Ok(api::TransferDirection::Get) => {
                if !t.staged_file.is_empty() || !t.url.is_empty() || !t.sha256.is_empty() {
                    return Err(invalid(
                        "a GET lands in the node's staging area: staged_file, url and sha256 do not apply",
                    ));
                }
                if t.resume {
                    return Err(invalid("resume applies to a PUT"));
                }
                Direction::Get
            }
            _ => {
                return Err(invalid(format!(
                    "transfer.direction must be TRANSFER_DIRECTION_PUT or _GET, got {}",
                    t.direction
                )));
            }
        };
        if t.resume && protocol == api::TransferProtocol::Scp {
            return Err(invalid(
                "resume needs SFTP: scp cannot write from an offset",
            ));
        }
        Ok(Transfer {
            direction,
            protocol,
            remote_path: t.remote_path.clone(),
            overwrite,
            resume: t.resume,
        })
    }

    /// The node that must run the job: the one holding its staged file.
    pub fn node(&self) -> Option<&str> {
        match &self.direction {
            Direction::Put(Source::Staged(id)) => Some(&id.node_id),
            _ => None,
        }
    }
}

impl From<&Transfer> for worker::Transfer {
    fn from(t: &Transfer) -> Self {
        let mut w = worker::Transfer {
            protocol: t.protocol as i32,
            remote_path: t.remote_path.clone(),
            overwrite: t.overwrite as i32,
            resume: t.resume,
            ..Default::default()
        };
        match &t.direction {
            Direction::Put(source) => {
                w.direction = api::TransferDirection::Put as i32;
                match source {
                    Source::Staged(id) => w.staged_file = id.to_string(),
                    Source::Url { url, sha256 } => {
                        w.url = url.clone();
                        w.sha256 = sha256.clone();
                    }
                }
            }
            Direction::Get => w.direction = api::TransferDirection::Get as i32,
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: &str) -> api::FileTransfer {
        api::FileTransfer {
            direction: api::TransferDirection::Put as i32,
            remote_path: "flash:/a.bin".into(),
            staged_file: id.into(),
            ..Default::default()
        }
    }

    fn err(t: api::FileTransfer) -> String {
        Transfer::from_wire(&t).unwrap_err().to_string()
    }

    #[test]
    fn staged_ids_name_their_node() {
        let t = Transfer::from_wire(&put("node-1/f-0123456789abcdef")).unwrap();
        assert_eq!(t.node(), Some("node-1"));
        assert_eq!(t.overwrite, api::Overwrite::IfDifferent);
        let w = worker::Transfer::from(&t);
        assert_eq!(w.staged_file, "node-1/f-0123456789abcdef");
        for bad in [
            "f-0123456789abcdef",
            "n/f-0123",
            "n/x-0123456789abcdef",
            "/f-0123456789abcdef",
        ] {
            assert!(
                err(put(bad)).contains("<node id>/f-<16 hex digits>"),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut t = put("");
        assert!(err(t.clone()).contains("exactly one of transfer.staged_file and transfer.url"));
        t.url = "ftp://x".into();
        assert!(err(t.clone()).contains("http:// or https://"));
        t.url = "http://127.0.0.1/x".into();
        assert!(err(t.clone()).contains("transfer.sha256 must be"));
        t.sha256 = "A".repeat(64);
        let ok = Transfer::from_wire(&t).unwrap();
        assert!(
            matches!(ok.direction, Direction::Put(Source::Url { ref sha256, .. }) if *sha256 == "a".repeat(64))
        );
        assert_eq!(ok.node(), None);
        t.remote_path.clear();
        assert!(err(t.clone()).contains("remote_path must be 1..=1024"));
        t.remote_path = "/tmp/x; rm -rf /".into();
        assert!(err(t.clone()).contains("remote_path must be"));
        let mut g = put("");
        g.direction = api::TransferDirection::Get as i32;
        g.resume = true;
        assert!(err(g.clone()).contains("resume applies to a PUT"));
        g.resume = false;
        g.url = "http://x".into();
        assert!(err(g.clone()).contains("do not apply"));
        let mut s = put("n/f-0123456789abcdef");
        s.protocol = api::TransferProtocol::Scp as i32;
        s.resume = true;
        assert!(err(s.clone()).contains("resume needs SFTP"));
        s.protocol = 9;
        assert!(err(s.clone()).contains("transfer.protocol must be"));
        s.protocol = 0;
        s.overwrite = 7;
        assert!(err(s.clone()).contains("transfer.overwrite must be"));
        let mut d = put("n/f-0123456789abcdef");
        d.direction = 0;
        assert!(err(d).contains("transfer.direction must be"));
    }
}
