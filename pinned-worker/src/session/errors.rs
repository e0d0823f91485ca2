//! How a read that did not end at the prompt becomes a session error.

use std::time::Duration;

use super::{DeviceSession, MAX_OUTPUT_BYTES};
use crate::error::SessionError;
use crate::terminal;

pub(super) enum ReadError {
    Timeout,
    Closed(String),
    TooLarge,
}

impl DeviceSession {
    pub(super) fn tail(&self) -> String {
        let text = terminal::clean(&self.buf[self.buf.len().saturating_sub(400)..]);
        let n = text.chars().count();
        text.chars().skip(n.saturating_sub(160)).collect()
    }

    pub(super) fn prompt_error(
        &self,
        e: ReadError,
        after: Duration,
        context: &'static str,
    ) -> SessionError {
        match e {
            ReadError::Timeout => SessionError::PromptTimeout {
                after,
                context,
                tail: self.tail(),
            },
            ReadError::Closed(why) => SessionError::SessionLost(why),
            ReadError::TooLarge => SessionError::OutputTooLarge {
                limit: MAX_OUTPUT_BYTES,
            },
        }
    }

    pub(super) fn command_error(&self, e: ReadError, cmd: &str, after: Duration) -> SessionError {
        match e {
            ReadError::Timeout => SessionError::CommandTimeout {
                command: cmd.to_string(),
                after,
                tail: self.tail(),
            },
            other => self.prompt_error(other, after, "command"),
        }
    }
}
