//! Fan-out of agent events to every connected manager session.
//!
//! Each session owns a bounded channel that is also its gRPC response stream, so an event
//! crosses no extra task. Producers push back instead of overflowing it: a device actor, the
//! fifo runner and a session's reader wait for [`EventBus::room`] before the work that
//! publishes, so a manager that reads slowly slows the node down rather than losing its
//! session. Only a session that reads nothing for `STALLED` is closed (its manager reconnects
//! and resyncs), so one stuck manager cannot stall the node for longer.

use std::sync::Mutex;
use std::time::Duration;

use netpulse_proto::agent::{AgentMessage, agent_message::Msg};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::warn;

pub type SessionTx = mpsc::Sender<Result<AgentMessage, Status>>;

/// Free places a session's channel must have before a producer goes on: more than any one
/// step publishes (a frame's handling publishes a few events).
pub const HEADROOM: usize = 64;
/// A session that frees no room for this long is not reading: it is closed.
pub const STALLED: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct EventBus {
    subs: Mutex<Vec<(u64, SessionTx)>>,
}

impl EventBus {
    pub fn subscribe(&self, id: u64, tx: SessionTx) {
        self.subs.lock().expect("lock").push((id, tx));
    }

    pub fn unsubscribe(&self, id: u64) {
        self.subs.lock().expect("lock").retain(|(i, _)| *i != id);
    }

    pub fn sessions(&self) -> usize {
        self.subs.lock().expect("lock").len()
    }

    /// Waits until every session has [`HEADROOM`] free places (at once when they have), closing
    /// a session that frees none within [`STALLED`].
    pub async fn room(&self) {
        let tight: Vec<(u64, SessionTx)> = self
            .subs
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, tx)| tx.capacity() < HEADROOM)
            .cloned()
            .collect();
        for (id, tx) in tight {
            // The permits are returned when dropped: this only waits for the room.
            if tokio::time::timeout(STALLED, tx.reserve_many(HEADROOM))
                .await
                .is_err()
            {
                warn!(session = id, stalled = ?STALLED, "manager session is not reading its events; closing it");
                self.close(id, &tx);
            }
        }
    }

    fn close(&self, id: u64, tx: &SessionTx) {
        self.unsubscribe(id);
        let _ = tx.try_send(Err(Status::resource_exhausted(
            "event stream stalled; reconnect",
        )));
    }

    pub fn publish(&self, msg: Msg) {
        let msg = AgentMessage { msg: Some(msg) };
        self.subs
            .lock()
            .expect("lock")
            .retain(|(id, tx)| match tx.try_send(Ok(msg.clone())) {
                Ok(()) => true,
                // Producers wait for room first; this is a publisher that did not.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(
                        session = id,
                        "manager session's event buffer overflowed; closing it"
                    );
                    let _ = tx.try_send(Err(Status::resource_exhausted(
                        "event stream fell behind; reconnect",
                    )));
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::agent::Fenced;

    #[tokio::test(start_paused = true)]
    async fn producers_wait_for_room_and_a_stalled_session_is_closed() {
        let bus = EventBus::default();
        let (tx, mut rx) = mpsc::channel(HEADROOM + 1);
        bus.subscribe(1, tx);
        for _ in 0..2 {
            bus.publish(Msg::Fenced(Fenced { reason: "x".into() }));
        }
        // Two places taken: less than HEADROOM free, so room waits for the reader.
        let bus = std::sync::Arc::new(bus);
        let b = bus.clone();
        let waiting = tokio::spawn(async move { b.room().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        rx.recv().await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room once the session read")
            .unwrap();
        assert_eq!(bus.sessions(), 1);
        // A reader that stops: room gives up on it after STALLED.
        bus.publish(Msg::Fenced(Fenced { reason: "x".into() }));
        bus.room().await;
        assert_eq!(bus.sessions(), 0, "the stalled session is closed");
    }

    #[tokio::test]
    async fn a_lagging_session_is_dropped_and_the_others_keep_receiving() {
        let bus = EventBus::default();
        let (fast_tx, mut fast) = mpsc::channel(8);
        let (slow_tx, _slow) = mpsc::channel(1);
        bus.subscribe(1, fast_tx);
        bus.subscribe(2, slow_tx);
        for _ in 0..3 {
            bus.publish(Msg::Fenced(Fenced { reason: "x".into() }));
            fast.recv().await.unwrap().unwrap();
        }
        assert_eq!(bus.sessions(), 1);
    }
}
