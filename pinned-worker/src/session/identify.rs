//! Identifying the device (`device_type: autodetect`), then carrying on as the platform found.

use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::DeviceSession;
use crate::error::SessionError;
use crate::platform::{Detector, Platform, detect::CERTAIN};

impl DeviceSession {
    /// Runs the detector's commands until a platform matches with certainty (or all have run),
    /// then switches the session to the best match.
    pub(super) async fn identify(
        &mut self,
        detector: &Detector,
        login: &str,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let mut outputs: Vec<(String, String)> = Vec::new();
        let mut best = detector.best(login, &outputs);
        for cmd in &detector.commands {
            if best.is_some_and(|b| b.priority >= CERTAIN) {
                break;
            }
            let out = self.command(cmd, timeout).await?;
            outputs.push((cmd.clone(), out.output));
            best = detector.best(login, &outputs);
        }
        let Some(found) = best else {
            let tried: Vec<&str> = outputs.iter().map(|(c, _)| c.as_str()).collect();
            return Err(SessionError::Unsupported(format!(
                "autodetect: the device (prompt {:?}) answered none of [{}] as a known platform \
                 does; name connection.device_type, or add a [detect] section to a definition",
                self.tail().lines().last().unwrap_or("").trim(),
                tried.join(", ")
            )));
        };
        info!(platform = %found.platform.name, priority = found.priority, commands = outputs.len(), "device identified");
        let platform = if self.platform.prompt.as_str() == detector.probe_prompt {
            found.platform
        } else {
            found.platform.with_prompt(self.platform.prompt.as_str())?
        };
        self.adopt(platform, timeout).await
    }

    /// Follows `platform` from now on: its prompt is learned afresh, and its paging is off.
    async fn adopt(
        &mut self,
        platform: &'static Platform,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        self.platform = platform;
        self.hostname.clear();
        self.learned = None;
        self.above = None;
        self.discard_pending()?;
        self.send_line("").await?;
        self.read_until(
            Instant::now() + timeout,
            true,
            None,
            &platform.confirmations,
            Duration::ZERO,
        )
        .await
        .map_err(|e| {
            self.prompt_error(e, timeout, "waiting for the prompt as the platform found")
        })?;
        self.settle_in(timeout).await
    }
}
