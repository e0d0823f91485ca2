//! The node's side of a transfer: the staged file read in pieces, or written with its hashes
//! taken on the way, so a file of any size costs a buffer, never its size in memory.

use std::path::Path;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

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

/// The hashes of a local file, read in pieces.
pub async fn hash_file(path: &Path) -> Result<(String, String), SessionError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
    let mut h = Hashes::new();
    let mut buf = vec![0; PIECE];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// A GET's file as it is written: hashed and counted on the way; `max` bytes at most.
pub struct Landing {
    file: BufWriter<tokio::fs::File>,
    pub hashes: Hashes,
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
            hashes: Hashes::new(),
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
        self.hashes.update(data);
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
        let (md5, sha256) = self.hashes.finish();
        Ok((self.progress.done(), md5, sha256, self.progress.rate()))
    }
}
