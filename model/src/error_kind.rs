use netpulse_proto::worker;

/// Why a job failed: a closed set, each with a stable lower-case name that clients match on
/// (`JobError.kind`). Most come from the worker; the last two are the manager's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    UnknownDeviceType,
    ConnectFailed,
    ConnectTimeout,
    AuthFailed,
    HostKeyRejected,
    PromptTimeout,
    CommandTimeout,
    CommandRejected,
    SessionLost,
    EnableFailed,
    ConfigModeFailed,
    CommitFailed,
    SaveFailed,
    Unsupported,
    Canceled,
    OutputTooLarge,
    Internal,
    /// The worker did not answer within the execution timeout and was killed.
    Timeout,
    /// The worker exited while running the job.
    WorkerExited,
    /// The node was fenced or shut down before the job started.
    NodeUnavailable,
    /// The node left the cluster, or forgot the job, while it ran: it is not run again.
    NodeLost,
    /// The job did not start within its queue timeout.
    QueueTimeout,
    /// The device refused the session: its lines or sessions were all in use.
    DeviceBusy,
    /// The job's credentials could not be had: held only in the memory of a manager that
    /// died, sealed with a key this manager lacks, or a reference the agent could not
    /// resolve (unknown profile, missing secret or field, the vault unreachable).
    CredentialsUnavailable,
    /// The job names a vault path the agent's allow-list does not hold.
    PermissionDenied,
    /// A file transfer failed (refused, cut, a hash that does not match, no room).
    TransferFailed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 27] = [
        ErrorKind::InvalidArgument,
        ErrorKind::UnknownDeviceType,
        ErrorKind::ConnectFailed,
        ErrorKind::ConnectTimeout,
        ErrorKind::AuthFailed,
        ErrorKind::HostKeyRejected,
        ErrorKind::PromptTimeout,
        ErrorKind::CommandTimeout,
        ErrorKind::CommandRejected,
        ErrorKind::SessionLost,
        ErrorKind::EnableFailed,
        ErrorKind::ConfigModeFailed,
        ErrorKind::CommitFailed,
        ErrorKind::SaveFailed,
        ErrorKind::Unsupported,
        ErrorKind::Canceled,
        ErrorKind::OutputTooLarge,
        ErrorKind::Internal,
        ErrorKind::Timeout,
        ErrorKind::WorkerExited,
        ErrorKind::NodeUnavailable,
        ErrorKind::NodeLost,
        ErrorKind::QueueTimeout,
        ErrorKind::DeviceBusy,
        ErrorKind::CredentialsUnavailable,
        ErrorKind::PermissionDenied,
        ErrorKind::TransferFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::UnknownDeviceType => "unknown_device_type",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::AuthFailed => "auth_failed",
            ErrorKind::HostKeyRejected => "host_key_rejected",
            ErrorKind::PromptTimeout => "prompt_timeout",
            ErrorKind::CommandTimeout => "command_timeout",
            ErrorKind::CommandRejected => "command_rejected",
            ErrorKind::SessionLost => "session_lost",
            ErrorKind::EnableFailed => "enable_failed",
            ErrorKind::ConfigModeFailed => "config_mode_failed",
            ErrorKind::CommitFailed => "commit_failed",
            ErrorKind::SaveFailed => "save_failed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Canceled => "canceled",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::Internal => "internal",
            ErrorKind::Timeout => "timeout",
            ErrorKind::WorkerExited => "worker_exited",
            ErrorKind::NodeUnavailable => "node_unavailable",
            ErrorKind::NodeLost => "node_lost",
            ErrorKind::QueueTimeout => "queue_timeout",
            ErrorKind::DeviceBusy => "device_busy",
            ErrorKind::CredentialsUnavailable => "credentials_unavailable",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::TransferFailed => "transfer_failed",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<worker::ErrorKind> for ErrorKind {
    fn from(k: worker::ErrorKind) -> Self {
        use worker::ErrorKind as W;
        match k {
            W::InvalidArgument => ErrorKind::InvalidArgument,
            W::UnknownDeviceType => ErrorKind::UnknownDeviceType,
            W::ConnectFailed => ErrorKind::ConnectFailed,
            W::ConnectTimeout => ErrorKind::ConnectTimeout,
            W::AuthFailed => ErrorKind::AuthFailed,
            W::HostKeyRejected => ErrorKind::HostKeyRejected,
            W::PromptTimeout => ErrorKind::PromptTimeout,
            W::CommandTimeout => ErrorKind::CommandTimeout,
            W::CommandRejected => ErrorKind::CommandRejected,
            W::SessionLost => ErrorKind::SessionLost,
            W::EnableFailed => ErrorKind::EnableFailed,
            W::ConfigModeFailed => ErrorKind::ConfigModeFailed,
            W::CommitFailed => ErrorKind::CommitFailed,
            W::SaveFailed => ErrorKind::SaveFailed,
            W::Unsupported => ErrorKind::Unsupported,
            W::Canceled => ErrorKind::Canceled,
            W::OutputTooLarge => ErrorKind::OutputTooLarge,
            // A result without a kind is a bug somewhere below the manager.
            W::Internal | W::Unspecified => ErrorKind::Internal,
            W::Timeout => ErrorKind::Timeout,
            W::WorkerExited => ErrorKind::WorkerExited,
            W::NodeUnavailable => ErrorKind::NodeUnavailable,
            W::DeviceBusy => ErrorKind::DeviceBusy,
            W::CredentialsUnavailable => ErrorKind::CredentialsUnavailable,
            W::PermissionDenied => ErrorKind::PermissionDenied,
            W::TransferFailed => ErrorKind::TransferFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_match_the_worker_protocol() {
        let names: HashSet<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for raw in 1..=25 {
            let w = worker::ErrorKind::try_from(raw).unwrap();
            let wire_name = w
                .as_str_name()
                .trim_start_matches("ERROR_KIND_")
                .to_ascii_lowercase();
            assert_eq!(ErrorKind::from(w).name(), wire_name);
        }
        assert!(
            worker::ErrorKind::try_from(26).is_err(),
            "a new worker kind needs a name here"
        );
    }
}
