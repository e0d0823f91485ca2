//! A device's file system, in memory, and the device's side of SCP (`scp -t` receives a file,
//! `scp -f` sends one) as byte-in, byte-out state machines the server feeds. A fault cuts the
//! next transfer after a number of bytes: the channel closes as when a device drops it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};

#[derive(Debug)]
pub struct Flash {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    capacity: u64,
    /// Cut the next transfer after this many bytes (0: no cut).
    cut_after: AtomicU64,
}

impl Default for Flash {
    fn default() -> Self {
        Flash::new(1 << 30)
    }
}

/// `flash:/a.bin` and `flash:a.bin` are one file.
fn key(path: &str) -> String {
    path.replacen(":/", ":", 1)
}

impl Flash {
    pub fn new(capacity: u64) -> Flash {
        Flash {
            files: Mutex::default(),
            capacity,
            cut_after: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.files
            .lock()
            .expect("lock")
            .values()
            .map(|f| f.len() as u64)
            .sum()
    }

    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used())
    }

    pub fn md5(&self, path: &str) -> Option<String> {
        let files = self.files.lock().expect("lock");
        let data = files.get(&key(path))?;
        Some(
            Md5::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    pub fn size(&self, path: &str) -> Option<u64> {
        self.files
            .lock()
            .expect("lock")
            .get(&key(path))
            .map(|f| f.len() as u64)
    }

    /// Files under a file system (`flash:`), with their sizes.
    pub fn list(&self, fs: &str) -> Vec<(String, u64)> {
        let fs = key(fs);
        self.files
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, _)| k.starts_with(&fs))
            .map(|(k, v)| (k[fs.len()..].to_string(), v.len() as u64))
            .collect()
    }

    pub fn put(&self, path: &str, data: Vec<u8>) -> Result<(), String> {
        let mut files = self.files.lock().expect("lock");
        let others: u64 = files
            .iter()
            .filter(|(k, _)| **k != key(path))
            .map(|(_, v)| v.len() as u64)
            .sum();
        if others + data.len() as u64 > self.capacity {
            return Err(format!("{path}: No space left on device"));
        }
        files.insert(key(path), data);
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.files.lock().expect("lock").get(&key(path)).cloned()
    }

    /// The next transfer is cut after `bytes` bytes.
    pub fn cut_next_transfer_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::Relaxed);
    }

    fn take_cut(&self) -> u64 {
        self.cut_after.swap(0, Ordering::Relaxed)
    }
}

/// What the server does on the channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Scp {
    Send(Vec<u8>),
    /// Exit status 0, EOF, close.
    Finish,
    /// Close at once, mid-transfer.
    Cut,
}

fn refuse(text: &str) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(format!("scp: {text}\n").as_bytes());
    v
}

#[derive(Debug)]
enum SinkState {
    Header(Vec<u8>),
    Data { size: u64, buf: Vec<u8> },
    Done,
}

/// `scp -t <path>`: receives one file.
#[derive(Debug)]
pub struct Sink {
    path: String,
    state: SinkState,
    cut: u64,
}

impl Sink {
    /// The sink and what it says first (ready).
    pub fn start(path: &str, flash: &Flash) -> (Sink, Vec<Scp>) {
        let sink = Sink {
            path: path.to_string(),
            state: SinkState::Header(Vec::new()),
            cut: flash.take_cut(),
        };
        (sink, vec![Scp::Send(vec![0])])
    }

    pub fn feed(&mut self, mut data: &[u8], flash: &Flash) -> Vec<Scp> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match &mut self.state {
                SinkState::Header(h) => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        h.extend_from_slice(data);
                        return out;
                    };
                    h.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let line = String::from_utf8_lossy(h).to_string();
                    let size = line
                        .strip_prefix('C')
                        .and_then(|l| l.split(' ').nth(1))
                        .and_then(|s| s.parse::<u64>().ok());
                    match size {
                        Some(size) if size > flash.capacity() => {
                            out.push(Scp::Send(refuse(&format!(
                                "{}: No space left on device",
                                self.path
                            ))));
                            out.push(Scp::Finish);
                            self.state = SinkState::Done;
                            return out;
                        }
                        Some(size) => {
                            self.state = SinkState::Data {
                                size,
                                buf: Vec::with_capacity(size.min(1 << 28) as usize),
                            };
                            out.push(Scp::Send(vec![0]));
                        }
                        None => {
                            out.push(Scp::Send(refuse(&format!("protocol error: {line:?}"))));
                            out.push(Scp::Finish);
                            self.state = SinkState::Done;
                            return out;
                        }
                    }
                }
                SinkState::Data { size, buf } => {
                    let want = (*size as usize + 1).saturating_sub(buf.len());
                    let n = want.min(data.len());
                    buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.cut > 0 && buf.len() as u64 >= self.cut {
                        self.state = SinkState::Done;
                        out.push(Scp::Cut);
                        return out;
                    }
                    if buf.len() == *size as usize + 1 {
                        buf.pop(); // the source's closing 0
                        let file = std::mem::take(buf);
                        self.state = SinkState::Done;
                        match flash.put(&self.path, file) {
                            Ok(()) => out.push(Scp::Send(vec![0])),
                            Err(e) => out.push(Scp::Send(refuse(&e))),
                        }
                        out.push(Scp::Finish);
                        return out;
                    }
                }
                SinkState::Done => return out,
            }
        }
        out
    }
}

/// `scp -f <path>`: sends one file once the client says it is ready.
#[derive(Debug)]
pub struct Source {
    path: String,
    step: u8,
}

impl Source {
    pub fn start(path: &str) -> Source {
        Source {
            path: path.to_string(),
            step: 0,
        }
    }

    pub fn feed(&mut self, data: &[u8], flash: &Flash) -> Vec<Scp> {
        let mut out = Vec::new();
        for _ in data.iter().filter(|&&b| b == 0) {
            self.step += 1;
            match self.step {
                1 => match flash.size(&self.path) {
                    Some(size) => {
                        let name = self.path.rsplit(['/', ':']).next().unwrap_or("file");
                        out.push(Scp::Send(format!("C0644 {size} {name}\n").into_bytes()));
                    }
                    None => {
                        out.push(Scp::Send(refuse(&format!(
                            "{}: No such file or directory",
                            self.path
                        ))));
                        out.push(Scp::Finish);
                    }
                },
                2 => {
                    let mut data = flash.get(&self.path).unwrap_or_default();
                    let cut = flash.take_cut();
                    if cut > 0 && (cut as usize) < data.len() {
                        data.truncate(cut as usize);
                        out.push(Scp::Send(data));
                        out.push(Scp::Cut);
                        return out;
                    }
                    data.push(0);
                    out.push(Scp::Send(data));
                }
                _ => out.push(Scp::Finish),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_goes_in_and_out_and_a_cut_keeps_nothing() {
        let flash = Flash::new(100);
        let (mut sink, hello) = Sink::start("flash:/a.bin", &flash);
        assert_eq!(hello, vec![Scp::Send(vec![0])]);
        assert_eq!(
            sink.feed(b"C0644 5 a.bin\n", &flash),
            vec![Scp::Send(vec![0])]
        );
        assert_eq!(sink.feed(b"hel", &flash), vec![]);
        assert_eq!(
            sink.feed(b"lo\0", &flash),
            vec![Scp::Send(vec![0]), Scp::Finish]
        );
        assert_eq!(flash.size("flash:a.bin"), Some(5));
        assert_eq!(
            flash.md5("flash:/a.bin").unwrap(),
            "5d41402abc4b2a76b9719d911017c592"
        );
        let mut src = Source::start("flash:a.bin");
        assert_eq!(
            src.feed(&[0], &flash),
            vec![Scp::Send(b"C0644 5 a.bin\n".to_vec())]
        );
        assert_eq!(src.feed(&[0], &flash), vec![Scp::Send(b"hello\0".to_vec())]);
        assert_eq!(src.feed(&[0], &flash), vec![Scp::Finish]);
        flash.cut_next_transfer_after(2);
        let (mut sink, _) = Sink::start("flash:b", &flash);
        sink.feed(b"C0644 5 b\n", &flash);
        assert_eq!(sink.feed(b"hello\0", &flash), vec![Scp::Cut]);
        assert_eq!(flash.size("flash:b"), None);
        let (mut sink, _) = Sink::start("flash:c", &flash);
        let refused = sink.feed(b"C0644 500 c\n", &flash);
        assert!(matches!(&refused[0], Scp::Send(v) if v[0] == 2));
        assert_eq!(flash.list("flash:"), vec![("a.bin".to_string(), 5)]);
    }
}
