//! Privileged, configuration and named modes, commit and save: the platform's commands, and
//! the prompt's word on whether they took effect.

use std::time::Duration;

use tokio::time::Instant;

use super::{DeviceSession, NO_ANSWERS, ReadEnd, SETTLE};
use crate::error::SessionError;
use crate::platform::{Confirmation, Save};
use crate::terminal;

/// Most exit commands sent to leave nested configuration modes.
const MAX_EXITS: usize = 4;

impl DeviceSession {
    /// Enters privileged mode, answering the secret prompt. No-op when already privileged.
    pub async fn enable(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let Some(en) = &self.platform.enable else {
            return Err(SessionError::Unsupported(format!(
                "{} has no enable mode",
                self.platform.name
            )));
        };
        if self.privileged && en.prompt_shows_privilege {
            return Ok(());
        }
        let start = Instant::now();
        self.discard_pending()?;
        self.send_line(&en.command).await?;
        let end = self
            .read_until(
                start + timeout,
                true,
                Some(&en.secret_prompt),
                NO_ANSWERS,
                SETTLE,
            )
            .await
            .map_err(|e| self.command_error(e, &en.command, timeout))?;
        if let ReadEnd::Pattern = end {
            if self.secret.is_empty() {
                // Answer the prompt anyway so the session is left at a prompt.
                let _ = self.send_line("").await;
                let _ = self
                    .read_until(Instant::now() + timeout, true, None, NO_ANSWERS, SETTLE)
                    .await;
                return Err(SessionError::EnableFailed(
                    "the device asks for an enable secret and none was given".into(),
                ));
            }
            self.buf.clear();
            let secret = self.secret.clone();
            self.send_line(&secret).await?;
            self.read_until(Instant::now() + timeout, true, None, NO_ANSWERS, SETTLE)
                .await
                .map_err(|e| self.command_error(e, "<enable secret>", timeout))?;
        }
        let text = terminal::clean(&self.buf);
        if let Some(why) = self.platform.rejection(&text) {
            return Err(SessionError::EnableFailed(why.trim().to_string()));
        }
        if en.prompt_shows_privilege && !self.privileged {
            let why = text
                .lines()
                .find(|l| l.starts_with('%'))
                .unwrap_or("prompt did not change to privileged mode");
            return Err(SessionError::EnableFailed(why.trim().to_string()));
        }
        Ok(())
    }

    pub async fn enter_config(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let Some(cm) = &self.platform.config else {
            return Ok(());
        };
        let enter = cm.enter.clone();
        self.enter_config_by(&enter, timeout).await
    }

    /// Enters configuration mode with `enter` (a platform's own, or its dry run's).
    pub async fn enter_config_by(
        &mut self,
        enter: &str,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let out = self.command(enter, timeout).await?;
        if !self.in_config {
            let why = out.rejected.unwrap_or(out.output);
            return Err(SessionError::ConfigModeFailed(format!(
                "{enter:?} did not enter configuration mode: {}",
                why.trim()
            )));
        }
        Ok(())
    }

    pub async fn exit_config(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let Some(cm) = &self.platform.config else {
            return Ok(());
        };
        if !self.in_config {
            return Ok(());
        }
        // Some platforms leave one level per exit (MLNX-OS, FASTPATH): repeat a few times.
        for _ in 0..MAX_EXITS {
            self.command(&cm.exit, timeout).await?;
            if !self.in_config {
                break;
            }
        }
        if self.in_config {
            return Err(SessionError::ConfigModeFailed(format!(
                "{:?} did not leave configuration mode",
                cm.exit
            )));
        }
        Ok(())
    }

    /// Applies the candidate configuration on platforms that have one. Returns whether it did.
    pub async fn commit(&mut self, timeout: Duration) -> Result<bool, SessionError> {
        let platform = self.platform;
        let Some(commit) = platform.config.as_ref().and_then(|c| c.commit.as_ref()) else {
            return Ok(false);
        };
        let command = commit.command.clone();
        self.commit_as(&command, timeout).await
    }

    /// Commits with `command` (the platform's, or its confirmed commit with a timer).
    pub async fn commit_as(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<bool, SessionError> {
        let out = self.command(command, timeout).await?;
        if let Some(why) = out.rejected {
            return Err(SessionError::CommitFailed(why.trim().to_string()));
        }
        Ok(true)
    }

    /// Throws the candidate configuration away after a failed push (platforms with commit).
    pub async fn discard_candidate(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let platform = self.platform;
        if let Some(commit) = platform.config.as_ref().and_then(|c| c.commit.as_ref()) {
            self.command(&commit.abort, timeout).await?;
        }
        Ok(())
    }

    /// Saves the running configuration. Call outside configuration mode, unless the platform
    /// saves from inside it (`Save::in_config`).
    pub async fn save(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let platform = self.platform;
        let (command, confirm) = match &platform.save {
            Save::Command {
                command, confirm, ..
            } => (command.as_str(), confirm.as_slice()),
            Save::ByCommit => return Ok(()),
            Save::Unsupported => {
                return Err(SessionError::Unsupported(format!(
                    "{} has no save command",
                    self.platform.name
                )));
            }
        };
        let start = Instant::now();
        self.discard_pending()?;
        self.send_line(command).await?;
        let answers: Vec<&Confirmation> = confirm.iter().chain(&platform.confirmations).collect();
        self.read_until(start + timeout, true, None, &answers, SETTLE)
            .await
            .map_err(|e| self.command_error(e, command, timeout))?;
        let out = self.finish_output(command, start);
        if let Some(why) = out.rejected {
            return Err(SessionError::SaveFailed(why.trim().to_string()));
        }
        Ok(())
    }

    /// Enters the platform's mode `name` (enabling first when it needs privilege).
    pub async fn enter_mode(&mut self, name: &str, timeout: Duration) -> Result<(), SessionError> {
        let platform = self.platform;
        let mode = platform.mode(name)?;
        if mode.enable {
            self.enable(timeout).await?;
        }
        let start = Instant::now();
        self.discard_pending()?;
        self.send_line(&mode.enter).await?;
        let end = self
            .read_until(
                start + timeout,
                true,
                Some(&mode.prompt),
                &platform.confirmations,
                SETTLE,
            )
            .await
            .map_err(|e| self.command_error(e, &mode.enter, timeout))?;
        if let ReadEnd::Prompt = end {
            // Back at the platform's own prompt: the device refused the mode.
            let out = self.finish_output(&mode.enter, start);
            return Err(SessionError::CommandRejected(format!(
                "{:?} did not enter mode {name}: {}",
                mode.enter,
                out.rejected.unwrap_or(out.output).trim()
            )));
        }
        let inside = platform.inside(mode);
        let line_start = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
        let tail = terminal::last_line(&self.buf[line_start..]);
        let host = inside
            .prompt
            .captures(&tail)
            .map(|c| inside.host_of(&c))
            .unwrap_or_default();
        let outer_host = std::mem::replace(&mut self.hostname, host);
        self.outer = Some((platform, outer_host, mode));
        self.platform = inside;
        self.privileged = false;
        Ok(())
    }

    /// Leaves the named mode the session is in, back to the platform's prompt.
    pub async fn leave_mode(&mut self, timeout: Duration) -> Result<(), SessionError> {
        let Some((platform, hostname, mode)) = self.outer.take() else {
            return Ok(());
        };
        self.platform = platform;
        self.hostname = hostname;
        self.command(&mode.exit, timeout).await?;
        Ok(())
    }
}
