//! Turns raw PTY output into plain text, the way a terminal would have shown it.
//!
//! Devices paint with control characters: `\r\n` line ends, backspaces and cursor moves that
//! erase a `--More--` marker, ANSI colour and bracketed-paste sequences (bash). A tiny line
//! editor applies them: each line has a cursor, printable bytes overwrite at the cursor, `\r`
//! returns to column 0, backspace and `ESC[nD` move left, `ESC[K` erases to the end. Lines that
//! were painted over lose their trailing blanks (the residue of an erased marker).

/// Cleans a whole buffer; the result has `\n` line ends and no control sequences.
pub fn clean(raw: &[u8]) -> String {
    let mut t = Terminal {
        out: Vec::with_capacity(raw.len()),
        line: Vec::new(),
        cursor: 0,
        painted: false,
    };
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        match b {
            b'\n' => t.newline(),
            b'\r' => {
                if raw.get(i) != Some(&b'\n') {
                    t.cursor = 0;
                    t.painted = true;
                }
            }
            0x08 => {
                t.cursor = t.cursor.saturating_sub(1);
                t.painted = true;
            }
            0x1b => i = t.escape(raw, i),
            b'\t' => t.put(b),
            0..=0x1f | 0x7f => {}
            _ => t.put(b),
        }
    }
    t.finish_line();
    String::from_utf8(t.out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The visible text of the last, unterminated line of `raw` (where a prompt would be).
pub fn last_line(raw: &[u8]) -> String {
    let start = memchr::memrchr(b'\n', raw).map_or(0, |i| i + 1);
    let cleaned = clean(&raw[start..]);
    match cleaned.rfind('\n') {
        Some(i) => cleaned[i + 1..].to_string(),
        None => cleaned,
    }
}

struct Terminal {
    out: Vec<u8>,
    line: Vec<u8>,
    cursor: usize,
    painted: bool,
}

impl Terminal {
    fn put(&mut self, b: u8) {
        if self.cursor < self.line.len() {
            self.line[self.cursor] = b;
        } else {
            self.line.resize(self.cursor, b' ');
            self.line.push(b);
        }
        self.cursor += 1;
    }

    fn finish_line(&mut self) {
        if self.painted {
            while self.line.last().is_some_and(|c| *c == b' ') {
                self.line.pop();
            }
        }
        self.out.extend_from_slice(&self.line);
        self.line.clear();
        self.cursor = 0;
        self.painted = false;
    }

    fn newline(&mut self) {
        self.finish_line();
        self.out.push(b'\n');
    }

    /// Handles the sequence after an ESC at `raw[i - 1]`; returns the index after it.
    fn escape(&mut self, raw: &[u8], mut i: usize) -> usize {
        match raw.get(i) {
            Some(b'[') => {
                i += 1;
                let start = i;
                while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                    i += 1;
                }
                let Some(&fin) = raw.get(i) else { return i };
                let n = std::str::from_utf8(&raw[start..i])
                    .ok()
                    .and_then(|p| p.split(';').next()?.parse::<usize>().ok())
                    .unwrap_or(1)
                    .max(1);
                match fin {
                    b'D' => {
                        self.cursor = self.cursor.saturating_sub(n);
                        self.painted = true;
                    }
                    b'C' => self.cursor += n,
                    b'G' => {
                        self.cursor = n - 1;
                        self.painted = true;
                    }
                    b'K' => {
                        self.line.truncate(self.cursor);
                        self.painted = true;
                    }
                    _ => {}
                }
                i + 1
            }
            Some(b']') => {
                // OSC (window title): up to BEL or ESC \
                while i < raw.len()
                    && raw[i] != 0x07
                    && !(raw[i] == 0x1b && raw.get(i + 1) == Some(&b'\\'))
                {
                    i += 1;
                }
                if raw.get(i) == Some(&0x1b) {
                    i + 2
                } else {
                    i + 1
                }
            }
            Some(_) => i + 1,
            None => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_and_colours() {
        assert_eq!(clean(b"a\r\nb\r\n\x1b[1;32mok\x1b[0m"), "a\nb\nok");
    }

    #[test]
    fn cisco_more_erase_leaves_no_residue() {
        let raw = b"line1\r\n\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08line2\r\n";
        assert_eq!(clean(raw), "line1\nline2\n");
        let raw = b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08  ip address 1.2.3.4\r\n";
        assert_eq!(clean(raw), "  ip address 1.2.3.4\n");
    }

    #[test]
    fn huawei_and_junos_erase() {
        let raw = b"\x1b[42D                                          \x1b[42D interface X\r\n";
        assert_eq!(clean(raw), " interface X\n");
        assert_eq!(
            clean(b"\r                                        \rge-0/0/1\r\n"),
            "ge-0/0/1\n"
        );
    }

    #[test]
    fn bracketed_paste_and_prompt_line() {
        let raw = b"ls\r\n\x1b[?2004l\rfile\r\n\x1b[?2004hroot@h:~# ";
        assert_eq!(clean(raw), "ls\nfile\nroot@h:~# ");
        assert_eq!(last_line(raw), "root@h:~# ");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Printable lines without trailing blanks (an erased marker's residue is trimmed).
        fn lines() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec("[ -~]{0,60}[!-~]|", 0..30)
        }

        proptest! {
            #[test]
            fn any_bytes_clean_to_text_without_control_sequences(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
                let out = clean(&raw);
                prop_assert!(!out.contains(['\r', '\x1b', '\x08']));
            }

            #[test]
            fn crlf_text_round_trips(lines in lines()) {
                prop_assert_eq!(clean(lines.join("\r\n").as_bytes()), lines.join("\n"));
            }

            #[test]
            fn more_erase_sequences_between_lines_leave_the_plain_text(lines in lines(), every in 1usize..5) {
                let erase = "\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";
                let mut raw = String::new();
                for (i, l) in lines.iter().enumerate() {
                    if i > 0 {
                        raw.push_str("\r\n");
                        if i % every == 0 {
                            raw.push_str(erase); // where a --More-- marker was cut out
                        }
                    }
                    raw.push_str(l);
                }
                prop_assert_eq!(clean(raw.as_bytes()), lines.join("\n"));
            }
        }
    }

    #[test]
    fn indentation_and_trailing_blanks_of_plain_lines_survive() {
        assert_eq!(clean(b"  a  \r\n b"), "  a  \n b");
    }
}
