//! Exit codes of the `pinned-worker` process: the one place they are defined. The parent reads
//! them when it reaps the worker; the last frame (`Exiting`) carries the same code and a reason.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | normal: idle TTL reached, parent closed stdin, shutdown frame, one-shot job done |
//! | 10   | session lost: keepalive failed, the device closed the session, or a command left it in an unknown state |
//! | 11   | connect failed: TCP, SSH handshake, or no prompt after login |
//! | 12   | authentication failed |
//! | 13   | host key rejected (changed, or unknown under the strict policy) |
//! | 64   | bad arguments: the init frame was missing, malformed or invalid |
//! | 70   | internal error (frame i/o to the parent failed) |

use crate::error::SessionError;

pub const OK: i32 = 0;
pub const SESSION_LOST: i32 = 10;
pub const CONNECT_FAILED: i32 = 11;
pub const AUTH_FAILED: i32 = 12;
pub const HOST_KEY_REJECTED: i32 = 13;
pub const BAD_ARGUMENTS: i32 = 64;
pub const INTERNAL: i32 = 70;

/// The exit code for a failure to open a session.
pub fn for_connect_error(e: &SessionError) -> i32 {
    match e {
        SessionError::AuthFailed { .. } => AUTH_FAILED,
        SessionError::HostKeyRejected(_) => HOST_KEY_REJECTED,
        SessionError::InvalidArgument(_) | SessionError::UnknownDeviceType { .. } => BAD_ARGUMENTS,
        SessionError::SessionLost(_) => SESSION_LOST,
        _ => CONNECT_FAILED,
    }
}
