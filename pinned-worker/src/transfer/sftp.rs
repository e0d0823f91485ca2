//! SFTP over the session's SSH connection (`russh-sftp`): size checks, resume from an
//! offset, writes pipelined by the library.

use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;

use russh::client::Handle;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::OpenFlags;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::local::{Landing, PIECE, failed};
use crate::error::SessionError;
use crate::ssh::HostKeyCheck;
use crate::updates::Progress;

pub struct Sftp {
    session: SftpSession,
    t: Duration,
}

impl Sftp {
    pub async fn open(h: &Handle<HostKeyCheck>, t: Duration) -> Result<Sftp, SessionError> {
        let start = async {
            let ch = h
                .channel_open_session()
                .await
                .map_err(|e| failed(format!("opening the sftp channel: {e}")))?;
            ch.request_subsystem(true, "sftp")
                .await
                .map_err(|e| failed(format!("starting sftp on the device: {e}")))?;
            SftpSession::new(ch.into_stream())
                .await
                .map_err(|e| failed(format!("the device's sftp server did not start: {e}")))
        };
        let session = tokio::time::timeout(t, start)
            .await
            .map_err(|_| failed(format!("no sftp session within {t:?}")))??;
        session.set_timeout(t.as_secs().max(1));
        Ok(Sftp { session, t })
    }

    /// The remote file's size; None when there is none.
    pub async fn size(&self, path: &str) -> Option<u64> {
        self.session.metadata(path).await.ok().and_then(|m| m.size)
    }

    /// Writes `local` to `path` from byte `from` on (0: a new file).
    pub async fn put(
        &self,
        path: &str,
        local: &Path,
        from: u64,
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        let flags = if from > 0 {
            OpenFlags::WRITE
        } else {
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE
        };
        let mut remote = self
            .session
            .open_with_flags(path, flags)
            .await
            .map_err(|e| failed(format!("opening {path} on the device: {e}")))?;
        let mut f = tokio::fs::File::open(local)
            .await
            .map_err(|e| failed(format!("opening {}: {e}", local.display())))?;
        if from > 0 {
            remote
                .seek(SeekFrom::Start(from))
                .await
                .map_err(|e| failed(format!("seeking in {path}: {e}")))?;
            f.seek(SeekFrom::Start(from))
                .await
                .map_err(|e| failed(format!("seeking in {}: {e}", local.display())))?;
        }
        let mut buf = vec![0; PIECE];
        loop {
            let n = f
                .read(&mut buf)
                .await
                .map_err(|e| failed(format!("reading {}: {e}", local.display())))?;
            if n == 0 {
                break;
            }
            tokio::time::timeout(self.t, remote.write_all(&buf[..n]))
                .await
                .map_err(|_| failed(format!("the device took no data for {:?}", self.t)))?
                .map_err(|e| {
                    failed(format!(
                        "writing {path} failed after {} bytes: {e}",
                        from + progress.done()
                    ))
                })?;
            progress.advance(n);
        }
        tokio::time::timeout(self.t, remote.shutdown())
            .await
            .map_err(|_| failed(format!("closing {path} took longer than {:?}", self.t)))?
            .map_err(|e| failed(format!("closing {path} on the device: {e}")))
    }

    /// Reads `path` into `landing`; returns its size.
    pub async fn get(&self, path: &str, landing: &mut Landing) -> Result<u64, SessionError> {
        let size = self
            .size(path)
            .await
            .ok_or_else(|| failed(format!("{path} is not on the device")))?;
        landing.check_size(size)?;
        let mut remote = self
            .session
            .open(path)
            .await
            .map_err(|e| failed(format!("opening {path} on the device: {e}")))?;
        let mut buf = vec![0; PIECE];
        let mut got = 0;
        loop {
            let n = tokio::time::timeout(self.t, remote.read(&mut buf))
                .await
                .map_err(|_| failed(format!("the device sent nothing for {:?}", self.t)))?
                .map_err(|e| failed(format!("reading {path} after {got} bytes: {e}")))?;
            if n == 0 {
                break;
            }
            landing.write(&buf[..n]).await?;
            got += n as u64;
        }
        if got != size {
            return Err(failed(format!(
                "the device sent {got} of the {size} bytes of {path}"
            )));
        }
        Ok(got)
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(self.t, self.session.close()).await;
    }
}
