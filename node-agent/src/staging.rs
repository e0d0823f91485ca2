//! The node's staging area: files uploaded for transfer jobs to put on devices, fetched from
//! a URL for them, or got from devices by them, until a download takes them or their
//! retention ends.
//!
//! One directory: `<id>` holds a file's bytes and `<id>.json` what is known of it (name, size,
//! SHA-256, when it came), written after the bytes, so a file without its `.json` is
//! incomplete and removed at start. A file is written as `<id>.part` and renamed when whole:
//! nothing half-written is ever offered. The limit counts stored files and those being
//! written; a write that would pass it fails `Full` (RESOURCE_EXHAUSTED at the API).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netpulse_proto::api::StagedFile;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

#[derive(Clone, Debug, clap::Args)]
pub struct StagingArgs {
    /// Where staged files are kept (created when missing).
    #[arg(
        long,
        env = "NETPULSE_STAGING_DIR",
        default_value = "/var/lib/netpulse/staging"
    )]
    pub staging_dir: PathBuf,
    /// Most bytes the staging area holds, files being written included.
    #[arg(long, env = "NETPULSE_STAGING_MAX_BYTES", default_value_t = 4 << 30)]
    pub staging_max_bytes: u64,
    /// How long a staged file is kept, 1..=10080 minutes.
    #[arg(long, env = "NETPULSE_STAGING_RETENTION_MINUTES", default_value_t = 60)]
    pub staging_retention_minutes: u64,
}

impl Default for StagingArgs {
    fn default() -> Self {
        StagingArgs {
            staging_dir: PathBuf::from("/var/lib/netpulse/staging"),
            staging_max_bytes: 4 << 30,
            staging_retention_minutes: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    size: u64,
    sha256: String,
    created_unix_ms: i64,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<String, Entry>,
    /// Bytes of files being written.
    writing: u64,
    /// Running GETs: job id → the part they write and the file's name.
    landings: HashMap<String, (PathBuf, String)>,
}

#[derive(Debug)]
pub struct Staging {
    node_id: String,
    dir: Option<PathBuf>,
    max: u64,
    retention: Duration,
    inner: Mutex<Inner>,
}

impl Default for Staging {
    /// No staging area: every transfer is refused, saying so.
    fn default() -> Self {
        Staging {
            node_id: String::new(),
            dir: None,
            max: 0,
            retention: Duration::ZERO,
            inner: Mutex::default(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn io(what: &str, e: std::io::Error) -> StagingError {
    StagingError::Io(format!("{what}: {e}"))
}

fn new_file_id() -> String {
    format!("f-{:016x}", rand::random::<u64>())
}

impl StagingArgs {
    pub fn open(&self, node_id: &str) -> Result<Staging, String> {
        if !(1..=10_080).contains(&self.staging_retention_minutes) {
            return Err(format!(
                "staging-retention-minutes must be 1..=10080, got {}",
                self.staging_retention_minutes
            ));
        }
        let dir = &self.staging_dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("staging-dir {}: {e}", dir.display()))?;
        let s = Staging {
            node_id: node_id.to_string(),
            dir: Some(dir.clone()),
            max: self.staging_max_bytes,
            retention: Duration::from_secs(self.staging_retention_minutes * 60),
            ..Staging::default()
        };
        let listing =
            std::fs::read_dir(dir).map_err(|e| format!("staging-dir {}: {e}", dir.display()))?;
        let mut files = HashMap::new();
        let mut names = Vec::new();
        for e in listing.flatten() {
            names.push(e.file_name().to_string_lossy().to_string());
        }
        for n in &names {
            if let Some(id) = n.strip_suffix(".json")
                && names.iter().any(|m| m == id)
                && let Ok(text) = std::fs::read(dir.join(n))
                && let Ok(entry) = serde_json::from_slice::<Entry>(&text)
            {
                files.insert(id.to_string(), entry);
            }
        }
        for n in &names {
            let id = n.strip_suffix(".json").unwrap_or(n);
            if !files.contains_key(id) {
                let _ = std::fs::remove_file(dir.join(n));
            }
        }
        info!(dir = %dir.display(), files = files.len(), "staging area open");
        s.inner.lock().expect("lock").files = files;
        s.sweep();
        Ok(s)
    }
}

impl Staging {
    fn dir(&self) -> Result<&Path, StagingError> {
        self.dir
            .as_deref()
            .ok_or_else(|| StagingError::Invalid("this node agent has no staging area".into()))
    }

    fn public(&self, id: &str, e: &Entry) -> StagedFile {
        StagedFile {
            id: format!("{}/{id}", self.node_id),
            node_id: self.node_id.clone(),
            name: e.name.clone(),
            size: e.size,
            sha256: e.sha256.clone(),
            expires_unix_ms: e.created_unix_ms + self.retention.as_millis() as i64,
        }
    }

    /// The file part of a public id, which must name this node.
    fn local_id<'a>(&self, id: &'a str) -> Result<&'a str, StagingError> {
        let parsed = netpulse_model::transfer::StagedId::parse(id)
            .map_err(|e| StagingError::Invalid(e.to_string()))?;
        if parsed.node_id != self.node_id {
            return Err(StagingError::NotFound(format!(
                "staged file {id} is on node {}, not on {}",
                parsed.node_id, self.node_id
            )));
        }
        Ok(&id[id.len() - parsed.file.len()..])
    }

    /// (bytes used, files stored, the limit), for the metrics.
    pub fn usage(&self) -> (u64, usize, u64) {
        let inner = self.inner.lock().expect("lock");
        let stored: u64 = inner.files.values().map(|e| e.size).sum();
        (stored + inner.writing, inner.files.len(), self.max)
    }

    fn room(inner: &Inner, max: u64) -> u64 {
        let stored: u64 = inner.files.values().map(|e| e.size).sum();
        max.saturating_sub(stored + inner.writing)
    }

    /// Bytes a new file may still take.
    pub fn room_left(&self) -> u64 {
        Self::room(&self.inner.lock().expect("lock"), self.max)
    }

    /// Removes files past their retention.
    pub fn sweep(&self) {
        let Some(dir) = &self.dir else { return };
        let cutoff = now_ms() - self.retention.as_millis() as i64;
        let mut inner = self.inner.lock().expect("lock");
        let old: Vec<String> = inner
            .files
            .iter()
            .filter(|(_, e)| e.created_unix_ms < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            inner.files.remove(&id);
            let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
            let _ = std::fs::remove_file(dir.join(&id));
            info!(file = %id, "staged file expired; removed");
        }
    }

    /// Starts a new file; `size` (when known) is refused at once beyond the room left.
    pub async fn begin(&self, name: &str, size: Option<u64>) -> Result<Writing<'_>, StagingError> {
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\0']) {
            return Err(StagingError::Invalid(format!(
                "a file name is 1..=255 bytes without '/', got {name:?}"
            )));
        }
        self.sweep();
        let dir = self.dir()?.to_path_buf();
        let id = new_file_id();
        let reserved = size.unwrap_or(0);
        {
            let mut inner = self.inner.lock().expect("lock");
            let room = Self::room(&inner, self.max);
            if reserved > room {
                return Err(self.full(reserved, room));
            }
            inner.writing += reserved;
        }
        let part = dir.join(format!("{id}.part"));
        let file = match tokio::fs::File::create(&part).await {
            Ok(f) => f,
            Err(e) => {
                self.inner.lock().expect("lock").writing -= reserved;
                return Err(io("creating a staged file", e));
            }
        };
        Ok(Writing {
            staging: self,
            id,
            name: name.to_string(),
            part,
            file: Some(tokio::io::BufWriter::with_capacity(256 << 10, file)),
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            written: 0,
            reserved,
            kept: false,
        })
    }

    fn full(&self, wanted: u64, room: u64) -> StagingError {
        StagingError::Full(format!(
            "the staging area of node {} has room for {room} more bytes (of {}); the file needs {wanted}",
            self.node_id, self.max
        ))
    }

    /// A staged file's path and description.
    pub fn get(&self, id: &str) -> Result<(PathBuf, StagedFile), StagingError> {
        let local = self.local_id(id)?;
        let dir = self.dir()?;
        let inner = self.inner.lock().expect("lock");
        let e = inner.files.get(local).ok_or_else(|| {
            StagingError::NotFound(format!(
                "staged file {id} not found (never stored, or its retention has passed)"
            ))
        })?;
        Ok((dir.join(local), self.public(local, e)))
    }

    /// A stored file with this SHA-256, if there is one (a URL fetched before).
    pub fn by_sha256(&self, sha256: &str) -> Option<(PathBuf, StagedFile)> {
        let dir = self.dir.as_ref()?;
        let inner = self.inner.lock().expect("lock");
        let (id, e) = inner.files.iter().find(|(_, e)| e.sha256 == sha256)?;
        Some((dir.join(id), self.public(id, e)))
    }

    /// Where the GET of `job_id` writes its file, and the most it may write;
    /// [`Staging::take_landing`] gives it back when the job ends.
    pub fn landing(&self, job_id: &str, name: &str) -> Result<(PathBuf, u64), StagingError> {
        let part = self.dir()?.join(format!("{}.part", new_file_id()));
        let mut inner = self.inner.lock().expect("lock");
        let room = Self::room(&inner, self.max);
        inner
            .landings
            .insert(job_id.to_string(), (part.clone(), name.to_string()));
        Ok((part, room))
    }

    pub fn take_landing(&self, job_id: &str) -> Option<(PathBuf, String)> {
        self.inner.lock().expect("lock").landings.remove(job_id)
    }

    /// Keeps a GET's file (whole and verified by the worker) as a staged file.
    pub fn land(&self, part: &Path, name: &str, sha256: &str) -> Result<StagedFile, StagingError> {
        let dir = self.dir()?;
        let id = part
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".part"))
            .ok_or_else(|| StagingError::Invalid(format!("{} is no landing", part.display())))?
            .to_string();
        let size = std::fs::metadata(part)
            .map_err(|e| io("the landed file", e))?
            .len();
        let room = self.room_left();
        if size > room {
            let _ = std::fs::remove_file(part);
            return Err(self.full(size, room));
        }
        let entry = Entry {
            name: name.to_string(),
            size,
            sha256: sha256.to_string(),
            created_unix_ms: now_ms(),
        };
        keep(dir, &id, part, &entry)?;
        let mut inner = self.inner.lock().expect("lock");
        inner.files.insert(id.clone(), entry.clone());
        Ok(self.public(&id, &entry))
    }
}

/// Renames the part into place, then writes the description (its presence marks it whole).
fn keep(dir: &Path, id: &str, part: &Path, entry: &Entry) -> Result<(), StagingError> {
    std::fs::rename(part, dir.join(id)).map_err(|e| io("storing the staged file", e))?;
    let json = serde_json::to_vec(entry).map_err(|e| StagingError::Io(e.to_string()))?;
    let tmp = dir.join(format!("{id}.json.part"));
    std::fs::write(&tmp, json).map_err(|e| io("describing the staged file", e))?;
    std::fs::rename(&tmp, dir.join(format!("{id}.json")))
        .map_err(|e| io("describing the staged file", e))
}

/// A file being written into the staging area; dropped unfinished, it is removed.
pub struct Writing<'a> {
    staging: &'a Staging,
    id: String,
    name: String,
    part: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    sha256: ring::digest::Context,
    written: u64,
    reserved: u64,
    kept: bool,
}

impl Writing<'_> {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StagingError> {
        let after = self.written + data.len() as u64;
        if after > self.reserved {
            let s = self.staging;
            let mut inner = s.inner.lock().expect("lock");
            let more = after - self.reserved;
            let room = Staging::room(&inner, s.max);
            if more > room {
                return Err(s.full(after, room + self.reserved));
            }
            inner.writing += more;
            self.reserved = after;
        }
        self.sha256.update(data);
        let f = self.file.as_mut().expect("open until finished");
        f.write_all(data)
            .await
            .map_err(|e| io("writing a staged file", e))?;
        self.written = after;
        Ok(())
    }

    /// Keeps the file; it must hash to `expect_sha256` when that is given.
    pub async fn finish(mut self, expect_sha256: Option<&str>) -> Result<StagedFile, StagingError> {
        let mut f = self.file.take().expect("open until finished");
        f.flush()
            .await
            .map_err(|e| io("writing a staged file", e))?;
        f.get_mut()
            .sync_all()
            .await
            .map_err(|e| io("syncing a staged file", e))?;
        drop(f);
        let ctx = std::mem::replace(
            &mut self.sha256,
            ring::digest::Context::new(&ring::digest::SHA256),
        );
        let sha256: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(want) = expect_sha256
            && want != sha256
        {
            return Err(StagingError::Invalid(format!(
                "the file's SHA-256 is {sha256}, not the {want} it was given with"
            )));
        }
        let s = self.staging;
        let entry = Entry {
            name: self.name.clone(),
            size: self.written,
            sha256,
            created_unix_ms: now_ms(),
        };
        keep(s.dir()?, &self.id, &self.part, &entry)?;
        self.kept = true;
        let mut inner = s.inner.lock().expect("lock");
        inner.writing -= self.reserved;
        self.reserved = 0;
        inner.files.insert(self.id.clone(), entry.clone());
        Ok(s.public(&self.id, &entry))
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.staging.inner.lock().expect("lock").writing -= self.reserved;
        }
        if !self.kept {
            warn!(file = %self.id, bytes = self.written, "staged file not finished; removed");
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max: u64) -> Staging {
        StagingArgs {
            staging_dir: dir.to_path_buf(),
            staging_max_bytes: max,
            staging_retention_minutes: 1,
        }
        .open("n1")
        .unwrap()
    }

    #[tokio::test]
    async fn files_are_kept_whole_within_the_limit_and_found_again_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 10);
        let mut w = s.begin("a.bin", None).await.unwrap();
        w.write(b"hello").await.unwrap();
        assert!(matches!(
            w.write(b"-world").await,
            Err(StagingError::Full(_))
        ));
        let f = w.finish(None).await.unwrap();
        assert_eq!((f.size, f.node_id.as_str()), (5, "n1"));
        assert!(f.id.starts_with("n1/f-"));
        assert_eq!(s.usage().0, 5);
        assert!(
            matches!(s.begin("b", Some(6)).await, Err(StagingError::Full(_))),
            "refused at once"
        );
        // A wrong hash keeps nothing.
        let mut w = s.begin("c", Some(2)).await.unwrap();
        w.write(b"hi").await.unwrap();
        assert!(matches!(
            w.finish(Some(&"0".repeat(64))).await,
            Err(StagingError::Invalid(_))
        ));
        assert_eq!(s.usage().0, 5);
        // Dropped unfinished: nothing left.
        let mut w = s.begin("d", None).await.unwrap();
        w.write(b"x").await.unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            2,
            "a.bin and its json"
        );
        let again = open(tmp.path(), 10);
        let (path, same) = again.get(&f.id).unwrap();
        assert_eq!(
            (std::fs::read(path).unwrap(), same.sha256),
            (b"hello".to_vec(), f.sha256.clone())
        );
        assert!(matches!(
            again.get("n2/f-0123456789abcdef"),
            Err(StagingError::NotFound(_))
        ));
        assert!(matches!(
            again.get("n1/f-0123456789abcdef"),
            Err(StagingError::NotFound(_))
        ));
        assert!(again.by_sha256(&f.sha256).is_some());
    }

    #[tokio::test]
    async fn a_landing_is_kept_once_whole_and_only_within_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), 4);
        let (part, max) = s.landing("j1", "x.cfg").unwrap();
        assert_eq!(max, 4);
        assert_eq!(s.take_landing("j1"), Some((part.clone(), "x.cfg".into())));
        std::fs::write(&part, b"abc").unwrap();
        let f = s.land(&part, "x.cfg", "ab").unwrap();
        assert_eq!((f.size, f.name.as_str()), (3, "x.cfg"));
        let (part, max) = s.landing("j2", "y").unwrap();
        assert_eq!(max, 1);
        std::fs::write(&part, b"abc").unwrap();
        assert!(matches!(
            s.land(&part, "y", "ab"),
            Err(StagingError::Full(_))
        ));
        assert!(!part.exists());
        assert!(
            Staging::default().landing("j3", "z").is_err(),
            "no staging area: refused"
        );
    }
}
