//! `backup`: the running configuration read before a push and after it, and the unified diff of
//! the two, so that a job keeps what the configuration was and shows what it changed.

use std::time::Duration;

use crate::error::SessionError;
use crate::session::DeviceSession;

/// The configuration around a push.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backup {
    pub before: String,
    pub after: String,
    /// Unified, `before` → `after`; empty when they are the same.
    pub diff: String,
}

/// The running configuration, as the platform's `show_config` command prints it.
pub async fn capture(s: &mut DeviceSession, timeout: Duration) -> Result<String, SessionError> {
    let platform = s.platform();
    let Some(cmd) = platform.show_config.clone() else {
        return Err(SessionError::Unsupported(format!(
            "backup is not available on {}: its definition names no show_config command",
            platform.name
        )));
    };
    let out = s.command(&cmd, timeout).await?;
    if let Some(why) = out.rejected {
        return Err(SessionError::CommandRejected(format!(
            "backup: {cmd:?} was rejected (it may need enable_mode): {why}"
        )));
    }
    Ok(out.output)
}

/// The unified diff of two configurations.
pub fn diff(before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_diff_shows_added_and_removed_lines() {
        let d = super::diff("hostname r1\nntp server 1\n", "hostname r1\nntp server 2\n");
        assert!(d.starts_with("--- before\n+++ after\n"), "{d}");
        assert!(d.contains("\n-ntp server 1\n+ntp server 2\n"), "{d}");
        assert_eq!(super::diff("a\n", "a\n"), "");
    }
}
