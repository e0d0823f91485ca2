//! What a running job tells its parent before its result: pieces of output as they arrive
//! (`stream_output`) and a transfer's progress. Best effort by design: a frame that finds the
//! worker's outgoing queue full is dropped, never waited for, so a slow parent cannot slow the
//! device's reads; the result holds everything anyway.

use std::time::Duration;

use netpulse_proto::api::{OutputChunk, TransferProgress};
use netpulse_proto::worker::{JobUpdate, job_update::Update};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Pending output is sent when this much has gathered ...
const CHUNK_BYTES: usize = 16 << 10;
/// ... or when the oldest pending line has waited this long.
const CHUNK_DELAY: Duration = Duration::from_millis(200);
/// Progress is sent at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The job's side of the worker's update queue; `None` sends nothing.
#[derive(Clone, Debug, Default)]
pub struct Updates {
    tx: Option<(mpsc::Sender<JobUpdate>, String)>,
}

impl Updates {
    pub fn new(tx: mpsc::Sender<JobUpdate>, job_id: &str) -> Updates {
        Updates {
            tx: Some((tx, job_id.to_string())),
        }
    }

    fn send(&self, update: Update) {
        if let Some((tx, job_id)) = &self.tx {
            let _ = tx.try_send(JobUpdate {
                job_id: job_id.clone(),
                update: Some(update),
            });
        }
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }
}

/// One command's output on its way out in whole lines: `feed` is given the session's read
/// buffer after each read, and sends what ends in a newline once enough has gathered or the
/// oldest of it has waited [`CHUNK_DELAY`] (the read loop wakes at [`OutputStream::due`]).
#[derive(Debug)]
pub struct OutputStream {
    updates: Updates,
    command_index: u32,
    command: String,
    /// Bytes of the buffer already sent (or skipped: the echo).
    done: usize,
    /// Bytes of text sent so far (the chunks' offsets).
    offset: u64,
    /// When the oldest unsent complete line arrived.
    waiting_since: Option<Instant>,
    echo_seen: bool,
}

impl OutputStream {
    pub fn new(updates: Updates, command_index: usize, command: &str) -> OutputStream {
        OutputStream {
            updates,
            command_index: command_index as u32,
            command: command.trim().to_string(),
            done: 0,
            offset: 0,
            waiting_since: None,
            echo_seen: false,
        }
    }

    /// When the read loop must call [`OutputStream::flush`] at the latest.
    pub fn due(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + CHUNK_DELAY)
    }

    /// Where the complete lines not sent yet end, if there are any.
    fn lines_end(&self, buf: &[u8]) -> Option<usize> {
        buf.get(self.done..)
            .and_then(|b| memchr::memrchr(b'\n', b))
            .map(|i| self.done + i + 1)
    }

    pub fn feed(&mut self, buf: &[u8]) {
        let Some(end) = self.lines_end(buf) else {
            return;
        };
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if end - self.done >= CHUNK_BYTES || since.elapsed() >= CHUNK_DELAY {
            self.flush(buf);
        }
    }

    /// Sends the complete lines not sent yet.
    pub fn flush(&mut self, buf: &[u8]) {
        self.waiting_since = None;
        let Some(end) = self.lines_end(buf) else {
            return;
        };
        let mut text = crate::terminal::clean(&buf[self.done..end]);
        self.done = end;
        if !self.echo_seen {
            self.echo_seen = true;
            // The first line is the device echoing the command.
            let first = text.split_inclusive('\n').next().unwrap_or("");
            if !self.command.is_empty() && first.trim_end().ends_with(&self.command) {
                text.drain(..first.len());
            }
        }
        if text.is_empty() {
            return;
        }
        let len = text.len() as u64;
        self.updates.send(Update::Output(OutputChunk {
            command_index: self.command_index,
            text,
            offset: self.offset,
        }));
        self.offset += len;
    }
}

/// A transfer's progress: bytes done of the total, the rate since the start.
#[derive(Debug)]
pub struct Progress {
    updates: Updates,
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(updates: Updates, total: u64) -> Progress {
        Progress {
            updates,
            total,
            done: 0,
            started: Instant::now(),
            last: None,
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn rate(&self) -> u64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.done as f64 / secs) as u64
        } else {
            0
        }
    }

    pub fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || self.done == self.total {
            self.last = Some(Instant::now());
            self.updates.send(Update::Progress(TransferProgress {
                bytes_done: self.done,
                bytes_total: self.total,
                bytes_per_second: self.rate(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut mpsc::Receiver<JobUpdate>) -> Vec<Update> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|u| u.update)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn output_goes_out_in_whole_lines_without_the_echo_and_in_order() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut s = OutputStream::new(Updates::new(tx, "j"), 2, "ping 10.0.0.1");
        let mut buf = b"ping 10.0.0.1\r\nReply 1\r\nRep".to_vec();
        s.feed(&buf);
        assert!(drain(&mut rx).is_empty(), "nothing before the delay");
        tokio::time::advance(CHUNK_DELAY).await;
        assert!(s.due().is_some_and(|t| t <= Instant::now()));
        s.flush(&buf);
        buf.extend_from_slice(b"ly 2\r\nrouter#");
        s.feed(&buf);
        assert!(drain(&mut rx).len() == 1, "one chunk so far");
        tokio::time::advance(CHUNK_DELAY).await;
        s.feed(&buf);
        let Update::Output(c) = &drain(&mut rx)[0] else {
            panic!()
        };
        assert_eq!(
            (c.command_index, c.text.as_str(), c.offset),
            (2, "Reply 2\n", 8)
        );
        assert_eq!(s.due(), None, "the prompt is no line: nothing waits");
        // A full buffer's worth goes at once.
        let big = "x".repeat(CHUNK_BYTES) + "\n";
        buf.extend_from_slice(big.as_bytes());
        s.feed(&buf);
        assert_eq!(drain(&mut rx).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_is_paced_and_the_last_step_always_sent() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut p = Progress::new(Updates::new(tx, "j"), 10);
        for _ in 0..9 {
            p.advance(1);
        }
        assert_eq!(drain(&mut rx).len(), 1, "paced");
        p.advance(1);
        let Update::Progress(last) = &drain(&mut rx)[0] else {
            panic!()
        };
        assert_eq!((last.bytes_done, last.bytes_total), (10, 10));
        // Off: nothing to send to, nothing fails.
        Progress::new(Updates::default(), 1).advance(1);
    }
}
