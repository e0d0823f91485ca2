//! One interactive CLI session on a device.
//!
//! Every exchange is "send a line, read until the prompt comes back". The read loop appends
//! channel data to a buffer and, after each chunk, looks only at the last unterminated line:
//! a `--More--` marker is answered with a space and cut out; a prompt that starts with the
//! device's learned hostname ends the read at once. A prompt with another name (the hostname
//! was just changed by configuration) ends it only after a short quiet period, so a chunk
//! boundary inside an output line that merely looks like a prompt cannot cut the output short.
//! There are no fixed sleeps: every read waits for a pattern, bounded by a deadline.

use std::time::Duration;

use regex::Regex;
use russh::ChannelMsg;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::command::CommandLine;
use crate::error::SessionError;
use crate::platform::{Confirmation, NamedMode, Platform};
use crate::ssh::{self, Target, Transport};
use crate::terminal;
use crate::transcript::Transcript;
use crate::updates::OutputStream;

mod errors;
mod identify;
mod modes;
use errors::ReadError;

/// How long an unanchored prompt match must stay quiet before it counts.
const SETTLE: Duration = Duration::from_millis(150);
/// Most questions one command may have answered (a device that keeps asking is not looped on).
const MAX_ANSWERS: usize = 16;
/// How long the output must stay quiet before a prompt of an unexpected shape counts.
const LOOSE_SETTLE: Duration = Duration::from_millis(300);
const NO_ANSWERS: &[Confirmation] = &[];
/// Largest output one command may produce (jobs travel in frames of at most 64 MiB).
pub const MAX_OUTPUT_BYTES: usize = 48 << 20;

pub struct DeviceSession {
    transport: Transport,
    platform: &'static Platform,
    hostname: String,
    buf: Vec<u8>,
    privileged: bool,
    in_config: bool,
    secret: String,
    /// Set when the first prompt did not fit the platform's pattern: the learned prompt's
    /// own shape (its text, then anything, then a terminator), followed from then on.
    learned: Option<Regex>,
    /// A line the device prints above every prompt (`{master:0}`), learned at login.
    above: Option<String>,
    /// Inside a named mode: the platform and hostname to return to, and the mode.
    outer: Option<(&'static Platform, String, &'static NamedMode)>,
    transcript: Transcript,
    /// Where the running command's output goes as it arrives (`stream_output`).
    stream: Option<OutputStream>,
}

#[derive(Debug)]
pub struct CommandOutput {
    pub output: String,
    /// The device's rejection text, when it rejected the command.
    pub rejected: Option<String>,
    pub duration: Duration,
    /// False when the read ended at an expected pattern instead of the prompt.
    pub at_prompt: bool,
}

enum ReadEnd {
    Prompt,
    Pattern,
}

impl DeviceSession {
    /// Connects, logs in, finds the prompt, confirms it with a RETURN and turns paging off.
    pub async fn open(
        target: &Target,
        platform: &'static Platform,
        secret: &str,
        prompt_timeout: Duration,
    ) -> Result<DeviceSession, SessionError> {
        let transport = ssh::open(target).await?;
        let mut s = DeviceSession {
            transport,
            platform,
            hostname: String::new(),
            buf: Vec::new(),
            privileged: false,
            in_config: false,
            secret: secret.to_string(),
            learned: None,
            above: None,
            outer: None,
            transcript: Transcript::new(target.secrets().into_iter().chain([secret.into()])),
            stream: None,
        };
        let began = Instant::now();
        let deadline = began + prompt_timeout;
        // Login questions (a licence to read, a key to press) are answered on the way.
        s.read_until(
            deadline,
            false,
            None,
            &platform.confirmations,
            Duration::ZERO,
        )
        .await
        .map_err(|e| match e {
            ReadError::Closed(_) if let Some(reason) = s.transport.refusal(&s.tail()) => {
                SessionError::DeviceBusy {
                    addr: target.addr(),
                    reason,
                }
            }
            e => s.prompt_error(
                e,
                prompt_timeout,
                "waiting for the first prompt after login",
            ),
        })?;
        let login = terminal::clean(&s.buf);
        s.settle_in(prompt_timeout).await?;
        if let Some(detector) = platform.detector {
            s.identify(detector, &login, prompt_timeout).await?;
        }
        s.transport.setup.prompt = began.elapsed();
        s.transport.setup.prompt_line = s.tail().lines().last().unwrap_or("").trim().into();
        info!(addr = %target.addr(), hostname = %s.hostname, "session ready");
        Ok(s)
    }

    /// After the first prompt: confirms it with a RETURN, learns the line printed above it,
    /// and turns paging off.
    async fn settle_in(&mut self, timeout: Duration) -> Result<(), SessionError> {
        self.keepalive(timeout).await?;
        // A RETURN prints nothing: what comes back besides the prompt is printed above it.
        let platform = self.platform;
        let reply = platform.strip_echo(&terminal::clean(&self.buf), "", platform.prompt_lines);
        self.above = reply
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(Into::into);
        for cmd in &platform.paging_off {
            let out = self.command(cmd, timeout).await?;
            if let Some(why) = out.rejected {
                debug!(command = cmd, %why, "paging-off command rejected; --More-- will be answered instead");
            }
        }
        Ok(())
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn transcript(&mut self) -> &mut Transcript {
        &mut self.transcript
    }

    /// Streams the next commands' output there (None: stop).
    pub fn stream_output(&mut self, stream: Option<OutputStream>) {
        self.stream = stream;
    }

    /// The SSH connection, for channels of its own (file transfer).
    pub fn ssh(&self) -> &russh::client::Handle<ssh::HostKeyCheck> {
        &self.transport.handle
    }

    pub fn setup(&self) -> &ssh::Setup {
        &self.transport.setup
    }

    pub fn privileged(&self) -> bool {
        self.privileged
    }

    pub fn platform(&self) -> &'static Platform {
        self.platform
    }

    /// Sends one command and returns its output without the echo and the prompt.
    pub async fn command(
        &mut self,
        cmd: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SessionError> {
        self.read_command(cmd, timeout, None, &[]).await
    }

    /// Sends one command under its own reading rules (timeout, expected pattern, answers).
    pub async fn run_line(
        &mut self,
        line: &CommandLine,
        timeout: Duration,
    ) -> Result<CommandOutput, SessionError> {
        let timeout = line.read_timeout.unwrap_or(timeout);
        self.read_command(&line.command, timeout, line.expect.as_ref(), &line.answers)
            .await
    }

    /// Sends `cmd` and reads until the prompt, or until `expect`; `answers` come before the
    /// platform's own.
    async fn read_command(
        &mut self,
        cmd: &str,
        timeout: Duration,
        expect: Option<&Regex>,
        answers: &[Confirmation],
    ) -> Result<CommandOutput, SessionError> {
        let start = Instant::now();
        self.discard_pending()?;
        self.send_line(cmd).await?;
        let platform = self.platform;
        let deadline = start + timeout;
        let end = if answers.is_empty() {
            // The common case, without a list to build.
            self.read_until(deadline, true, expect, &platform.confirmations, SETTLE)
                .await
        } else {
            let both: Vec<&Confirmation> = answers.iter().chain(&platform.confirmations).collect();
            self.read_until(deadline, true, expect, &both, SETTLE).await
        }
        .map_err(|e| self.command_error(e, cmd, timeout))?;
        let mut out = self.finish_output(cmd, start);
        if let ReadEnd::Pattern = end {
            // Nothing to strip at the end: the last line is the device's question.
            let text = terminal::clean(&self.buf);
            out.output = platform.strip_echo(&text, cmd, 0);
            out.at_prompt = false;
        }
        Ok(out)
    }

    /// Application keepalive: RETURN must bring the prompt back in time. Returns the round trip.
    pub async fn keepalive(&mut self, timeout: Duration) -> Result<Duration, SessionError> {
        let start = Instant::now();
        self.discard_pending()?;
        self.send_line("").await?;
        self.read_until(start + timeout, true, None, NO_ANSWERS, SETTLE)
            .await
            .map_err(|e| self.prompt_error(e, timeout, "keepalive"))?;
        Ok(start.elapsed())
    }

    /// True when the transport is known to be gone. Cheap; does not touch the device.
    pub fn is_closed(&self) -> bool {
        self.transport.is_closed()
    }

    /// Waits for something from the device while idle. Returns an error when the session
    /// ends; unsolicited output (log messages) is discarded before the next command anyway.
    pub async fn idle_event(&mut self) -> Result<(), SessionError> {
        match self.transport.channel.wait().await {
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                self.transcript.received(&data);
                if self.buf.len() < 1 << 20 {
                    self.buf.extend_from_slice(&data);
                }
                Ok(())
            }
            Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => Err(
                SessionError::SessionLost("the device closed the session".into()),
            ),
            Some(_) => Ok(()),
        }
    }

    pub async fn close(self) {
        self.transport.close().await;
    }

    /// Checks, without sending anything, that the session is still usable.
    pub fn check_alive(&mut self) -> Result<(), SessionError> {
        self.discard_pending()
    }

    /// Drops output that arrived while idle; fails if the session ended meanwhile.
    fn discard_pending(&mut self) -> Result<(), SessionError> {
        loop {
            match self.transport.poll_message() {
                None => break,
                Some(Some(ChannelMsg::Eof)) | Some(Some(ChannelMsg::Close)) | Some(None) => {
                    return Err(SessionError::SessionLost(
                        "the device closed the session".into(),
                    ));
                }
                Some(Some(_)) => {}
            }
        }
        if self.is_closed() {
            return Err(SessionError::SessionLost(
                "the ssh connection is closed".into(),
            ));
        }
        self.buf.clear();
        Ok(())
    }

    async fn send_line(&mut self, line: &str) -> Result<(), SessionError> {
        self.transcript.sent(line);
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.transport
            .channel
            .data(&bytes[..])
            .await
            .map_err(|e| SessionError::SessionLost(format!("sending to the device: {e}")))
    }

    /// Reads until the prompt (or `also`) shows on the last line, answering the questions in
    /// `answers` on the way (each new line at most once). See the module docs.
    async fn read_until<A: AsRef<Confirmation>>(
        &mut self,
        deadline: Instant,
        need_newline: bool,
        also: Option<&Regex>,
        answers: &[A],
        settle: Duration,
    ) -> Result<ReadEnd, ReadError> {
        // (when, host, privileged, in config, learned by the loose shape)
        let mut tentative: Option<(Instant, String, bool, bool, bool)> = None;
        // Where the line answered last began: a question is answered once, not at every chunk.
        let mut answered_line: Option<usize> = None;
        let mut answers_sent = 0;
        loop {
            let mut wait_until = tentative.as_ref().map_or(deadline, |t| t.0.min(deadline));
            let flush_at = self.stream.as_ref().and_then(OutputStream::due);
            if let Some(t) = flush_at {
                wait_until = wait_until.min(t);
            }
            let msg = match tokio::time::timeout_at(wait_until, self.transport.channel.wait()).await
            {
                Err(_)
                    if flush_at.is_some_and(|t| t <= Instant::now())
                        && Instant::now() < deadline =>
                {
                    if let Some(s) = self.stream.as_mut() {
                        s.flush(&self.buf);
                    }
                    continue;
                }
                Err(_) => {
                    if let Some((_, host, privileged, in_config, loose)) = tentative.take()
                        && Instant::now() < deadline
                    {
                        if loose && self.learned.is_none() {
                            self.learn_loosely(&host);
                        }
                        if host != self.hostname {
                            debug!(old = %self.hostname, new = %host, "prompt changed");
                        }
                        self.hostname = host;
                        self.privileged = privileged;
                        self.in_config = in_config;
                        return Ok(ReadEnd::Prompt);
                    }
                    return Err(ReadError::Timeout);
                }
                Ok(None) => return Err(ReadError::Closed("the ssh channel closed".into())),
                Ok(Some(m)) => m,
            };
            match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    self.transcript.received(&data);
                    self.buf.extend_from_slice(&data);
                    if let Some(s) = self.stream.as_mut() {
                        s.feed(&self.buf);
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => {
                    return Err(ReadError::Closed("the device closed the session".into()));
                }
                _ => continue,
            }
            tentative = None;
            if self.buf.len() > MAX_OUTPUT_BYTES {
                return Err(ReadError::TooLarge);
            }
            let start = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
            if (need_newline && start == 0) || self.buf.len() - start > 1024 {
                continue;
            }
            let tail = terminal::last_line(&self.buf[start..]);
            if tail.trim().is_empty() {
                continue;
            }
            if also.is_some_and(|re| re.is_match(&tail)) {
                return Ok(ReadEnd::Pattern);
            }
            if answered_line != Some(start)
                && answers_sent < MAX_ANSWERS
                && let Some(a) = answers.iter().find(|a| a.as_ref().pattern.is_match(&tail))
            {
                answered_line = Some(start);
                answers_sent += 1;
                let answer = a.as_ref().answer.clone();
                debug!(question = %tail.trim(), "answering a confirmation");
                self.send_line(&answer)
                    .await
                    .map_err(|e| ReadError::Closed(e.to_string()))?;
                continue;
            }
            if self.platform.more.is_match(&tail) {
                self.buf.truncate(start);
                self.transport
                    .channel
                    .data(&b" "[..])
                    .await
                    .map_err(|e| ReadError::Closed(e.to_string()))?;
                continue;
            }
            let two_lines;
            let prompt_text = if self.platform.prompt_lines == 2 && start > 0 {
                let above = memchr::memrchr(b'\n', &self.buf[..start - 1]).map_or(0, |i| i + 1);
                two_lines = format!(
                    "{}\n{tail}",
                    terminal::last_line(&self.buf[above..start - 1])
                );
                &two_lines
            } else {
                &tail
            };
            if let Some(c) = self.platform.prompt.captures(prompt_text) {
                let host = self.platform.host_of(&c);
                let privileged = self.platform.privileged.test(&c);
                let in_config = self.platform.in_config.test(&c);
                if (!self.hostname.is_empty() && host.starts_with(&self.hostname))
                    || (self.hostname.is_empty() && settle.is_zero())
                {
                    if self.hostname.is_empty() {
                        self.hostname = host;
                    }
                    self.privileged = privileged;
                    self.in_config = in_config;
                    return Ok(ReadEnd::Prompt);
                }
                tentative = Some((Instant::now() + settle, host, privileged, in_config, false));
            } else if let Some(re) = &self.learned {
                if let Some(c) = re.captures(prompt_text) {
                    self.privileged = self.platform.privileged.test(&c);
                    self.in_config = self.platform.in_config.test(&c);
                    return Ok(ReadEnd::Prompt);
                }
            } else if self.hostname.is_empty()
                && let Some(c) = self.platform.loose_prompt().captures(&tail)
            {
                // A prompt of another shape than the platform's (a renamed or odd device):
                // taken only once the output has been quiet for a while.
                let host = c["host"].trim_end().to_string();
                let privileged = self.platform.privileged.test(&c);
                let in_config = self.platform.in_config.test(&c);
                let when = Instant::now() + settle.max(LOOSE_SETTLE);
                tentative = Some((when, host, privileged, in_config, true));
            }
        }
    }

    /// Follows a prompt the platform's pattern did not describe.
    fn learn_loosely(&mut self, host: &str) {
        match self.platform.learned_shape(host) {
            Ok(re) => {
                info!(prompt = %host, platform = %self.platform.name, "prompt does not fit the platform's pattern; following the one the device shows");
                self.learned = Some(re);
            }
            Err(e) => debug!(error = %e, "cannot follow the learned prompt"),
        }
    }

    fn finish_output(&mut self, cmd: &str, start: Instant) -> CommandOutput {
        let text = terminal::clean(&self.buf);
        let mut output = self
            .platform
            .drop_noise(self.platform.strip_echo_and_prompt(&text, cmd));
        if let Some(above) = &self.above {
            let (rest, last) = output.rsplit_once('\n').unwrap_or(("", &output));
            if last.trim() == above {
                output.truncate(rest.len());
            }
        }
        let rejected = self
            .platform
            .rejection(&output)
            .map(|s| s.trim().to_string());
        CommandOutput {
            output,
            rejected,
            duration: start.elapsed(),
            at_prompt: true,
        }
    }
}
