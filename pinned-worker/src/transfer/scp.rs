//! SCP as the `scp` program speaks it (the "source" and "sink" protocol over an exec channel:
//! `scp -t <path>` receives a file, `scp -f <path>` sends one). Every message is answered by
//! one byte: 0 for yes, 1 (a warning) or 2 (an error) followed by a line of text.

use std::path::Path;
use std::time::Duration;

use russh::client::Handle;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::local::{Landing, PIECE, failed};
use crate::error::SessionError;
use crate::ssh::HostKeyCheck;
use crate::updates::Progress;

type Stream = russh::ChannelStream<russh::client::Msg>;

async fn open(
    h: &Handle<HostKeyCheck>,
    command: String,
    t: Duration,
) -> Result<Stream, SessionError> {
    let ch = tokio::time::timeout(t, h.channel_open_session())
        .await
        .map_err(|_| failed(format!("no scp channel within {t:?}")))?
        .map_err(|e| failed(format!("opening the scp channel: {e}")))?;
    ch.exec(true, command)
        .await
        .map_err(|e| failed(format!("starting scp on the device: {e}")))?;
    Ok(ch.into_stream())
}

/// Reads one answer byte (and its text when it is not 0).
async fn answer<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    t: Duration,
    what: &str,
) -> Result<(), SessionError> {
    let b = tokio::time::timeout(t, r.read_u8())
        .await
        .map_err(|_| failed(format!("the device did not answer {what} within {t:?}")))?
        .map_err(|_| failed(format!("the device closed the scp channel ({what})")))?;
    if b == 0 {
        return Ok(());
    }
    let mut line = Vec::new();
    let _ = tokio::time::timeout(t, (&mut *r).take(1024).read_until(b'\n', &mut line)).await;
    let text = String::from_utf8_lossy(&line).trim().to_string();
    Err(failed(format!("the device refused {what}: {text}")))
}

async fn send<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    data: &[u8],
    t: Duration,
) -> Result<(), SessionError> {
    tokio::time::timeout(t, w.write_all(data))
        .await
        .map_err(|_| failed(format!("the device took no data for {t:?}")))?
        .map_err(|e| failed(format!("the device closed the scp channel: {e}")))
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', ':']).next().unwrap_or(path)
}

/// Sends `local` (of `size` bytes) to `remote`.
pub async fn put(
    h: &Handle<HostKeyCheck>,
    remote: &str,
    local: &Path,
    size: u64,
    t: Duration,
    progress: &mut Progress,
) -> Result<(), SessionError> {
    let stream = open(h, format!("scp -t {remote}"), t).await?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    answer(&mut r, t, "the transfer").await?;
    let name = match base_name(remote) {
        "" => "file",
        n => n,
    };
    send(&mut w, format!("C0644 {size} {name}\n").as_bytes(), t).await?;
    answer(&mut r, t, "the file header").await?;
    let mut f = tokio::fs::File::open(local)
        .await
        .map_err(|e| failed(format!("opening {}: {e}", local.display())))?;
    let mut buf = vec![0; PIECE];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f
            .read(&mut buf[..want])
            .await
            .map_err(|e| failed(format!("reading {}: {e}", local.display())))?;
        if n == 0 {
            return Err(failed("the staged file is shorter than it was"));
        }
        send(&mut w, &buf[..n], t)
            .await
            .map_err(|e| failed(format!("{e} after {} of {size} bytes", progress.done())))?;
        left -= n as u64;
        progress.advance(n);
    }
    send(&mut w, &[0], t).await?;
    answer(&mut r, t, "the end of the file").await?;
    let _ = w.shutdown().await;
    Ok(())
}

/// Receives `remote` into `landing`; returns its size.
pub async fn get(
    h: &Handle<HostKeyCheck>,
    remote: &str,
    landing: &mut Landing,
    t: Duration,
) -> Result<u64, SessionError> {
    let stream = open(h, format!("scp -f {remote}"), t).await?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    send(&mut w, &[0], t).await?;
    let mut header = Vec::new();
    let read = tokio::time::timeout(t, (&mut r).take(4096).read_until(b'\n', &mut header))
        .await
        .map_err(|_| failed(format!("the device sent no file header within {t:?}")))?
        .map_err(|e| failed(format!("reading the file header: {e}")))?;
    let text = String::from_utf8_lossy(&header).trim().to_string();
    let size = match header.first() {
        Some(b'C') => text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                failed(format!(
                    "the device sent a header scp does not know: {text:?}"
                ))
            })?,
        Some(1 | 2) => {
            return Err(failed(format!(
                "the device refused to send {remote}: {}",
                text.trim_start_matches(['\x01', '\x02'])
            )));
        }
        _ if read == 0 => {
            return Err(failed(format!(
                "the device closed the scp channel before sending {remote}"
            )));
        }
        _ => {
            return Err(failed(format!(
                "the device sent a header scp does not know: {text:?}"
            )));
        }
    };
    landing.check_size(size)?;
    send(&mut w, &[0], t).await?;
    let mut buf = vec![0; PIECE];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = tokio::time::timeout(t, r.read(&mut buf[..want]))
            .await
            .map_err(|_| failed(format!("the device sent nothing for {t:?}")))?
            .map_err(|e| failed(format!("reading from the device: {e}")))?;
        if n == 0 {
            return Err(failed(format!(
                "the device closed the transfer after {} of {size} bytes",
                size - left
            )));
        }
        landing.write(&buf[..n]).await?;
        left -= n as u64;
    }
    answer(&mut r, t, "the end of the file").await?;
    send(&mut w, &[0], t).await?;
    let _ = w.shutdown().await;
    Ok(size)
}
