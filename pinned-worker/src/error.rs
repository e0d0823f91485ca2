//! Errors of a device session, each with the wire error kind it maps to (in one place).

use std::time::Duration;

use netpulse_proto::worker::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown device_type {got:?}; allowed: {allowed}")]
    UnknownDeviceType { got: String, allowed: String },
    #[error("cannot connect to {addr}: {reason}")]
    ConnectFailed { addr: String, reason: String },
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("{addr} refused the session, all its lines or sessions are in use: {reason}")]
    DeviceBusy { addr: String, reason: String },
    #[error("authentication as {user:?} failed: {reason}")]
    AuthFailed { user: String, reason: String },
    #[error("host key rejected: {0}")]
    HostKeyRejected(String),
    #[error("no prompt within {after:?} ({context}); last output: {tail:?}")]
    PromptTimeout {
        after: Duration,
        context: &'static str,
        tail: String,
    },
    #[error("command {command:?} did not finish within {after:?}; last output: {tail:?}")]
    CommandTimeout {
        command: String,
        after: Duration,
        tail: String,
    },
    #[error("{0}")]
    CommandRejected(String),
    #[error("session lost: {0}")]
    SessionLost(String),
    #[error("enable failed: {0}")]
    EnableFailed(String),
    #[error("configuration mode: {0}")]
    ConfigModeFailed(String),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("save failed: {0}")]
    SaveFailed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("canceled")]
    Canceled,
    #[error("output exceeds {limit} bytes")]
    OutputTooLarge { limit: usize },
    #[error("transfer failed: {0}")]
    TransferFailed(String),
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            SessionError::UnknownDeviceType { .. } => ErrorKind::UnknownDeviceType,
            SessionError::ConnectFailed { .. } => ErrorKind::ConnectFailed,
            SessionError::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            SessionError::AuthFailed { .. } => ErrorKind::AuthFailed,
            SessionError::DeviceBusy { .. } => ErrorKind::DeviceBusy,
            SessionError::HostKeyRejected(_) => ErrorKind::HostKeyRejected,
            SessionError::PromptTimeout { .. } => ErrorKind::PromptTimeout,
            SessionError::CommandTimeout { .. } => ErrorKind::CommandTimeout,
            SessionError::CommandRejected(_) => ErrorKind::CommandRejected,
            SessionError::SessionLost(_) => ErrorKind::SessionLost,
            SessionError::EnableFailed(_) => ErrorKind::EnableFailed,
            SessionError::ConfigModeFailed(_) => ErrorKind::ConfigModeFailed,
            SessionError::CommitFailed(_) => ErrorKind::CommitFailed,
            SessionError::SaveFailed(_) => ErrorKind::SaveFailed,
            SessionError::Unsupported(_) => ErrorKind::Unsupported,
            SessionError::Canceled => ErrorKind::Canceled,
            SessionError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            SessionError::TransferFailed(_) => ErrorKind::TransferFailed,
        }
    }

    /// After this error the session's state is unknown (a command may still be running on the
    /// device, or the transport is gone), so the session must not be reused.
    pub fn poisons_session(&self) -> bool {
        matches!(
            self,
            SessionError::CommandTimeout { .. }
                | SessionError::PromptTimeout { .. }
                | SessionError::SessionLost(_)
                | SessionError::Canceled
                | SessionError::OutputTooLarge { .. }
        )
    }

    pub fn to_wire(&self) -> netpulse_proto::worker::Error {
        netpulse_proto::worker::Error {
            kind: self.kind() as i32,
            message: self.to_string(),
        }
    }
}
