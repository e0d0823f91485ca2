//! The device side of NetPulse: one SSH session to one network device, kept open and used for
//! that device's jobs one at a time.
//!
//! Layers, bottom up:
//! - [`ssh`]: TCP + SSH handshake with a host-key policy, authentication, a PTY shell channel.
//! - [`terminal`]: turns raw PTY bytes into text (line ends, erase sequences, ANSI codes).
//! - [`platform`]: per-platform prompts, paging, enable, configuration mode, commit, save,
//!   confirmations and rejection patterns, as data (TOML definitions, built in or an
//!   operator's).
//! - [`session`]: "send a line, read until the prompt", enable, configuration mode, keepalive.
//! - [`ops`]: a job (commands, or configuration lines) run over a session, with per-command
//!   results; [`parse`] turns an output into rows (TextFSM) where the command asks.
//! - [`worker`]: the `pinned-worker` process: frames from the parent on stdin (read and
//!   queued by `inbox`), results on stdout, keepalive and idle TTL timers, exit codes
//!   ([`exit_code`]).

pub mod backup;
pub mod child;
pub mod command;
pub mod error;
pub mod exit_code;
mod inbox;
pub mod ops;
pub mod options;
pub mod parse;
pub mod platform;
pub mod session;
pub mod ssh;
pub mod terminal;
pub mod transcript;
pub mod transfer;
pub mod updates;
pub mod worker;
