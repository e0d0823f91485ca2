//! One command of a job and the rules for reading its answer.

use std::time::Duration;

use regex::Regex;

use crate::platform::Confirmation;

/// One command and how to read its answer.
#[derive(Clone, Debug)]
pub struct CommandLine {
    pub command: String,
    /// `None`: the job's command timeout.
    pub read_timeout: Option<Duration>,
    /// Ends the read instead of the prompt; the device then waits for the next line.
    pub expect: Option<Regex>,
    /// Questions answered on the way, before the platform's own.
    pub answers: Vec<Confirmation>,
    /// Parse the output into rows.
    pub parse: Option<netpulse_model::Parse>,
}

impl CommandLine {
    pub fn plain(command: &str) -> CommandLine {
        CommandLine {
            command: command.to_string(),
            read_timeout: None,
            expect: None,
            answers: Vec::new(),
            parse: None,
        }
    }
}
