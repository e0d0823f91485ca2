//! The two places a pinned device takes before its worker starts: one among the node's
//! pinned workers (`Ctx::pinned_slots`, held until the worker is reaped) and a login place
//! (`Ctx::logins`, at the device's reserved instant, held until its first prompt). Either
//! may be waited for in the device actor's `select!`: waiting is cancel-safe, and a reserved
//! login instant is kept across waits, so a busy device keeps its turn.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::logins::key_host;

#[derive(Debug, Default)]
pub struct Places {
    slot: Option<OwnedSemaphorePermit>,
    login: Option<OwnedSemaphorePermit>,
    login_at: Option<Instant>,
}

/// A pinned place and a login place, both taken.
pub struct Taken {
    pub slot: OwnedSemaphorePermit,
    pub login: OwnedSemaphorePermit,
}

impl Places {
    /// Gives both places back (nothing to start), and the reserved turn with them.
    pub fn release(&mut self) {
        *self = Places::default();
    }

    /// Both places, if they can be had now; what was had is kept for the next try.
    pub fn try_take(&mut self, ctx: &Ctx, key: &str) -> Option<Taken> {
        let try_take = |s: &Arc<Semaphore>| s.clone().try_acquire_owned().ok();
        if self.slot.is_none() {
            self.slot = try_take(&ctx.pinned_slots);
        }
        if self.slot.is_some() && self.login.is_none() {
            self.login = try_take(&ctx.logins.in_progress);
        }
        if self.slot.is_none() || self.login.is_none() {
            return None;
        }
        let host = key_host(key);
        let at = *self
            .login_at
            .get_or_insert_with(|| ctx.logins.reserve(host));
        if at > Instant::now() {
            return None;
        }
        if let Err(retry) = ctx.logins.admit(host) {
            self.login_at = Some(retry);
            return None;
        }
        self.login_at = None;
        // The instant the gate let it in (the worker's spawn, logged later, may be delayed).
        tracing::debug!(device = key, "login admitted");
        Some(Taken {
            slot: self.slot.take()?,
            login: self.login.take()?,
        })
    }

    /// Waits for what is missing: the pinned place, then a login place, then the turn.
    pub async fn wait(&mut self, ctx: &Ctx, key: &str) {
        if self.slot.is_none() {
            self.slot = ctx.pinned_slots.clone().acquire_owned().await.ok();
        } else if self.login.is_none() {
            self.login = ctx.logins.in_progress.clone().acquire_owned().await.ok();
        } else {
            let at = *self
                .login_at
                .get_or_insert_with(|| ctx.logins.reserve(key_host(key)));
            tokio::time::sleep_until(at).await;
        }
    }
}
