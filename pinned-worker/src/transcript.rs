//! An opt-in record of what a session received and sent, for debugging prompt problems: the
//! newest [`CAP`] bytes are kept, and the secrets the session knows are masked.

/// Most bytes a transcript returns (the newest are kept).
pub const CAP: usize = 64 << 10;
const MASK: &str = "********";

pub struct Transcript {
    /// Recording: from login until the first job says whether it wants it, then per job.
    on: bool,
    bytes: Vec<u8>,
    dropped: usize,
    secrets: Vec<String>,
}

impl Transcript {
    /// `secrets`: texts never to show (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Transcript {
            on: true,
            bytes: Vec::new(),
            dropped: 0,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// At a job's start: record it or not. A fresh session's login, recorded so far, stays
    /// in the job's transcript.
    pub fn begin_job(&mut self, wanted: bool) {
        if !(wanted && self.on) {
            self.bytes.clear();
            self.dropped = 0;
        }
        self.on = wanted;
    }

    pub fn received(&mut self, data: &[u8]) {
        if self.on {
            self.push(data);
        }
    }

    /// A line the session sent; one that is a secret shows masked.
    pub fn sent(&mut self, line: &str) {
        if !self.on {
            return;
        }
        let shown = if self.secrets.iter().any(|s| s == line) {
            MASK
        } else {
            line
        };
        self.push(format!("\n[sent] {shown}\n").as_bytes());
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        // Trimmed in batches.
        if self.bytes.len() > 2 * CAP {
            let cut = newest_lines(&self.bytes);
            self.bytes.drain(..cut);
            self.dropped += cut;
        }
    }

    /// The text so far, at most [`CAP`] bytes of it, secrets masked; recording stops.
    pub fn take(&mut self) -> String {
        self.on = false;
        let bytes = std::mem::take(&mut self.bytes);
        let start = newest_lines(&bytes);
        let mut text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        for s in &self.secrets {
            text = text.replace(s.as_str(), MASK);
        }
        let dropped = std::mem::take(&mut self.dropped) + start;
        if dropped > 0 {
            text.insert_str(0, &format!("[{dropped} earlier bytes left out]\n"));
        }
        text
    }
}

/// Where the newest [`CAP`] bytes begin, moved on to a line start so that no secret is cut
/// in half (0 when all fit).
fn newest_lines(bytes: &[u8]) -> usize {
    let Some(from) = bytes.len().checked_sub(CAP).filter(|&f| f > 0) else {
        return 0;
    };
    memchr::memchr(b'\n', &bytes[from..]).map_or(from, |i| from + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_newest_bytes_kept() {
        let mut t = Transcript::new(["en-secret".to_string(), String::new()]);
        t.received(b"R1>");
        t.sent("enable");
        t.received(b"Password: ");
        t.sent("en-secret");
        t.received(b"\r\nen-secret echoed by a careless device\r\nR1#");
        let text = t.take();
        assert!(!text.contains("en-secret"), "{text}");
        t.received(b"not recorded after take");
        t.begin_job(false);
        t.received(b"nor for a job that did not ask");
        t.begin_job(true);
        t.received(b"R1#");
        assert_eq!(t.take(), "R1#");
        assert!(
            text.contains("[sent] enable") && text.contains("[sent] ********"),
            "{text}"
        );

        let mut t = Transcript::new(["hunter2".to_string()]);
        for i in 0..20_000 {
            t.received(format!("line {i} hunter2\n").as_bytes());
        }
        let text = t.take();
        // The cap counts the bytes as received; a mask may be longer than its secret.
        assert!(text.len() <= CAP + CAP / 8, "{}", text.len());
        assert!(text.starts_with('[') && text.contains("earlier bytes left out"));
        assert!(
            text.trim_end().ends_with("line 19999 ********"),
            "{}",
            &text[text.len() - 40..]
        );
        assert!(
            !text.contains("hunter"),
            "no secret is cut in half at the front"
        );
    }
}
