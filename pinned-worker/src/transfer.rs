//! A file transfer job over an open session: put a staged file on the device, or get one
//! into the node's staging area, over SCP or SFTP on a channel of the session's own SSH
//! connection, with the device's CLI (the session) for what the protocols cannot tell: the
//! file's MD5 before (to skip an identical file) and after (to verify), and the free space.
//!
//! A transfer that fails reports nothing as done: a GET's partial file is removed here, and a
//! PUT is only `ok` once the device's copy has been checked.

mod local;
mod scp;
mod sftp;

use std::path::PathBuf;
use std::time::Duration;

use netpulse_proto::api::{Overwrite, TransferResult};
use tracing::{info, warn};

use crate::error::SessionError;
use crate::platform::transfer::Protocol;
use crate::session::DeviceSession;
use crate::updates::{Progress, Updates};
use local::{Hashing, Landing, failed};
use sftp::Sftp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferSpec {
    /// To the device (else from it).
    pub put: bool,
    /// None: the platform's.
    pub protocol: Option<Protocol>,
    pub remote: String,
    /// PUT: the staged file read; GET: the file written (it must not exist yet).
    pub local: PathBuf,
    pub overwrite: Overwrite,
    pub resume: bool,
    /// GET: the most bytes it may write.
    pub max_bytes: u64,
}

/// The device's MD5 of `path`, when its platform has a hash command and the file is there.
async fn remote_md5(
    s: &mut DeviceSession,
    path: &str,
    t: Duration,
) -> Result<Option<String>, SessionError> {
    let Some(cmd) = s.platform().transfer.hash_command(path) else {
        return Ok(None);
    };
    let out = s.command(&cmd, t).await?;
    if out.rejected.is_some() {
        return Ok(None);
    }
    Ok(crate::platform::transfer::md5_in(&out.output))
}

/// Fails when the device shows less free space than `needed` where `path` goes.
async fn check_room(
    s: &mut DeviceSession,
    path: &str,
    needed: u64,
    t: Duration,
) -> Result<(), SessionError> {
    let Some(cmd) = s.platform().transfer.free_command(path) else {
        return Ok(());
    };
    let out = s.command(&cmd, t).await?;
    match s.platform().transfer.free_bytes(&out.output) {
        Some(free) if free < needed => Err(failed(format!(
            "{path} needs {needed} bytes; the device shows {free} free"
        ))),
        Some(_) => Ok(()),
        None => {
            warn!(command = %cmd, "the free-space command's output shows no free bytes; not checked");
            Ok(())
        }
    }
}

pub async fn run(
    s: &mut DeviceSession,
    t: &TransferSpec,
    timeout: Duration,
    updates: &Updates,
) -> Result<TransferResult, SessionError> {
    let protocol = t.protocol.unwrap_or(s.platform().transfer.protocol);
    let mut result = TransferResult {
        protocol: protocol.name().into(),
        ..Default::default()
    };
    let sftp = match protocol {
        Protocol::Sftp => Some(Sftp::open(s.ssh(), timeout).await?),
        Protocol::Scp => None,
    };
    let r = if t.put {
        put(s, t, sftp.as_ref(), timeout, updates, &mut result).await
    } else {
        let r = get(s, t, sftp.as_ref(), timeout, updates, &mut result).await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&t.local).await;
        }
        r
    };
    if let Some(c) = sftp {
        c.close().await;
    }
    r.map(|()| result)
}

async fn put(
    s: &mut DeviceSession,
    t: &TransferSpec,
    sftp: Option<&Sftp>,
    timeout: Duration,
    updates: &Updates,
    result: &mut TransferResult,
) -> Result<(), SessionError> {
    let size = tokio::fs::metadata(&t.local)
        .await
        .map_err(|e| failed(format!("the staged file {}: {e}", t.local.display())))?
        .len();
    result.size = size;
    let has_hash = s.platform().transfer.hash_command.is_some();
    let mut hashing = Hashing::start(&t.local);
    // OVERWRITE_ALWAYS without resume needs no look at the device's file first.
    let look = t.overwrite != Overwrite::Always || t.resume;
    let before = match look {
        true => remote_md5(s, &t.remote, timeout).await?,
        false => None,
    };
    let remote_size = match sftp {
        Some(c) if look => c.size(&t.remote).await,
        _ => None,
    };
    let exists = before.is_some() || remote_size.is_some();
    // Ours is only waited for here when the device has a hash of its own to compare.
    let same_hash = match &before {
        Some(theirs) => hashing.get().await?.0 == *theirs,
        None => false,
    };
    match t.overwrite {
        Overwrite::Never if exists => {
            return Err(failed(format!(
                "{} is on the device already and overwrite is OVERWRITE_NEVER",
                t.remote
            )));
        }
        Overwrite::Never if !has_hash && sftp.is_none() => {
            return Err(SessionError::Unsupported(format!(
                "OVERWRITE_NEVER needs a look at the device's file: {} has no hash command \
                 and scp cannot tell; use sftp or another overwrite policy",
                s.platform().name
            )));
        }
        Overwrite::IfDifferent | Overwrite::Unspecified
            if same_hash || (!has_hash && remote_size == Some(size)) =>
        {
            info!(remote = %t.remote, "the device holds the same file; nothing sent");
            result.sha256 = hashing.get().await?.1.clone();
            result.skipped = true;
            result.verified_by = if has_hash { "md5" } else { "size" }.into();
            return Ok(());
        }
        _ => {}
    }
    let from = match (t.resume, remote_size) {
        (true, Some(n)) if n < size => n,
        _ => 0,
    };
    result.resumed_from = from;
    check_room(s, &t.remote, size - from, timeout).await?;
    let mut progress = Progress::new(updates.clone(), size - from);
    match sftp {
        Some(c) => c.put(&t.remote, &t.local, from, &mut progress).await?,
        None => scp::put(s.ssh(), &t.remote, &t.local, size, timeout, &mut progress).await?,
    }
    result.bytes_sent = progress.done();
    result.bytes_per_second = progress.rate();
    // The device hashes its copy while ours may still be hashing.
    let md5s = if has_hash {
        let (theirs, ours) = tokio::join!(remote_md5(s, &t.remote, timeout), hashing.get());
        Some((theirs?, ours?.0.clone()))
    } else {
        None
    };
    result.sha256 = hashing.get().await?.1.clone();
    verify(s, t, sftp, size, md5s, result).await
}

async fn get(
    s: &mut DeviceSession,
    t: &TransferSpec,
    sftp: Option<&Sftp>,
    timeout: Duration,
    updates: &Updates,
    result: &mut TransferResult,
) -> Result<(), SessionError> {
    let size_hint = match sftp {
        Some(c) => c.size(&t.remote).await.unwrap_or(0),
        None => 0,
    };
    let mut landing = Landing::create(
        &t.local,
        t.max_bytes,
        Progress::new(updates.clone(), size_hint),
    )
    .await?;
    match sftp {
        Some(c) => c.get(&t.remote, &mut landing).await?,
        None => scp::get(s.ssh(), &t.remote, &mut landing, timeout).await?,
    };
    let (size, md5, sha256, rate) = landing.finish().await?;
    result.size = size;
    result.bytes_sent = size;
    result.sha256 = sha256;
    result.bytes_per_second = rate;
    let md5s = match s.platform().transfer.hash_command.is_some() {
        true => Some((remote_md5(s, &t.remote, timeout).await?, md5)),
        false => None,
    };
    verify(s, t, sftp, size, md5s, result).await
}

/// Checks the device's copy against ours: its MD5 where the platform has a hash command
/// (`md5s`: the device's, as its hash command showed it, and ours), else its size (SFTP),
/// else the size the SCP sink acknowledged.
async fn verify(
    s: &mut DeviceSession,
    t: &TransferSpec,
    sftp: Option<&Sftp>,
    size: u64,
    md5s: Option<(Option<String>, String)>,
    result: &mut TransferResult,
) -> Result<(), SessionError> {
    if let Some((theirs, ours)) = md5s {
        match theirs {
            Some(m) if m == ours => {}
            Some(m) => {
                return Err(failed(format!(
                    "the device's MD5 of {} is {m}, ours is {ours}",
                    t.remote
                )));
            }
            None => {
                return Err(failed(format!(
                    "the device showed no MD5 of {} after the transfer (its hash command, \
                     {:?}, printed none; it may need enable_mode)",
                    t.remote,
                    s.platform()
                        .transfer
                        .hash_command(&t.remote)
                        .unwrap_or_default()
                )));
            }
        }
        result.verified_by = "md5".into();
        return Ok(());
    }
    if let Some(c) = sftp {
        let theirs = c.size(&t.remote).await;
        if theirs != Some(size) {
            return Err(failed(format!(
                "{} on the device is {} bytes, ours is {size}",
                t.remote,
                theirs.map_or("not there".into(), |n| n.to_string())
            )));
        }
    }
    result.verified_by = "size".into();
    Ok(())
}
