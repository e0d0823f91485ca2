//! The node's side of a transfer: the staged file read in pieces, or written with its hashes
//! taken on the way, so a file of any size costs a buffer, never its size in memory.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use md5::{Digest, Md5};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::SessionError;
use crate::updates::Progress;

/// Pieces read and written at a time.
pub const PIECE: usize = 256 << 10;

pub fn failed(what: impl std::fmt::Display) -> SessionError {
    SessionError::TransferFailed(what.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 and SHA-256 of what went through.
pub struct Hashes {
    md5: Md5,
    sha256: ring::digest::Context,
}

impl Default for Hashes {
    fn default() -> Self {
        Hashes::new()
    }
}

impl Hashes {
    pub fn new() -> Hashes {
        Hashes {
            md5: Md5::new(),
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha256.update(data);
    }

    /// (md5, sha256) in lower-case hex.
    pub fn finish(self) -> (String, String) {
        (
            hex(&self.md5.finalize()),
            hex(self.sha256.finish().as_ref()),
        )
    }
}

/// The hashes of a local file, taken on a blocking thread while the transfer goes on (on a
/// node's second core they cost the transfer no time); stopped when dropped.
pub struct Hashing {
    task: Option<tokio::task::JoinHandle<Result<(String, String), SessionError>>>,
    done: Option<(String, String)>,
    stop: Arc<AtomicBool>,
}

impl Hashing {
    pub fn start(path: &Path) -> Hashing {
        let (path, stop) = (path.to_owned(), Arc::new(AtomicBool::new(false)));
        let stopped = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
            let mut h = Hashes::new();
            let mut buf = vec![0; PIECE];
            while !stopped.load(Ordering::Relaxed) {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
                if n == 0 {
                    return Ok(h.finish());
                }
                h.update(&buf[..n]);
            }
            Err(failed("hashing stopped"))
        });
        Hashing {
            task: Some(task),
            done: None,
            stop,
        }
    }

    /// (md5, sha256), waited for the first time.
    pub async fn get(&mut self) -> Result<&(String, String), SessionError> {
        if let Some(task) = self.task.take() {
            let r = task
                .await
                .map_err(|e| failed(format!("hashing the staged file: {e}")))?;
            self.done = Some(r?);
        }
        self.done
            .as_ref()
            .ok_or_else(|| failed("hashing the staged file failed before"))
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Hashes taken on a blocking thread from the pieces sent to it, so that the worker's one
/// runtime thread only receives and writes.
struct HashesBehind {
    pieces: tokio::sync::mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<(String, String)>,
}

impl HashesBehind {
    fn start() -> HashesBehind {
        let (pieces, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let task = tokio::task::spawn_blocking(move || {
            let mut h = Hashes::new();
            while let Some(piece) = rx.blocking_recv() {
                h.update(&piece);
            }
            h.finish()
        });
        HashesBehind { pieces, task }
    }

    async fn update(&self, data: &[u8]) -> Result<(), SessionError> {
        self.pieces
            .send(data.to_vec())
            .await
            .map_err(|_| failed("the hashing thread stopped"))
    }

    /// Closes the pieces (the thread's loop ends) and takes its hashes.
    async fn finish(self) -> Result<(String, String), SessionError> {
        let HashesBehind { pieces, task } = self;
        drop(pieces);
        task.await
            .map_err(|e| failed(format!("hashing the staged file: {e}")))
    }
}

/// A GET's file as it is written: hashed and counted on the way; `max` bytes at most.
pub struct Landing {
    file: BufWriter<tokio::fs::File>,
    hashes: HashesBehind,
    pub progress: Progress,
    max: u64,
}

impl Landing {
    pub async fn create(
        path: &Path,
        max: u64,
        progress: Progress,
    ) -> Result<Landing, SessionError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|e| failed(format!("creating {}: {e}", path.display())))?;
        Ok(Landing {
            file: BufWriter::with_capacity(PIECE, file),
            hashes: HashesBehind::start(),
            progress,
            max,
        })
    }

    /// Refuses a file larger than the room left for it.
    pub fn check_size(&self, size: u64) -> Result<(), SessionError> {
        if size > self.max {
            return Err(failed(format!(
                "the file is {size} bytes; the node's staging area has room for {}",
                self.max
            )));
        }
        Ok(())
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.check_size(self.progress.done() + data.len() as u64)?;
        self.hashes.update(data).await?;
        self.file
            .write_all(data)
            .await
            .map_err(|e| failed(format!("writing the staged file: {e}")))?;
        self.progress.advance(data.len());
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(u64, String, String, u64), SessionError> {
        self.file
            .flush()
            .await
            .map_err(|e| failed(format!("writing the staged file: {e}")))?;
        self.file
            .get_mut()
            .sync_all()
            .await
            .map_err(|e| failed(format!("syncing the staged file: {e}")))?;
        let (md5, sha256) = self.hashes.finish().await?;
        Ok((self.progress.done(), md5, sha256, self.progress.rate()))
    }
}
