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
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

pub type SessionTx = mpsc::Sender<Result<AgentMessage, Status>>;

/// Free places a session's channel must have before a producer goes on: more than any one
/// step publishes (a frame's handling publishes a few events).
pub const HEADROOM: usize = 64;
/// A session that frees no room for this long is not reading: it is closed.
pub const STALLED: Duration = Duration::from_secs(30);

/// A session's channel, and the switch that ends the session when it is closed here: its
/// stream must then end (the manager reconnects and asks about its jobs again), not go on
/// silently without the events it missed.
#[derive(Clone)]
struct Sub {
    id: u64,
    tx: SessionTx,
    closed: CancellationToken,
}

#[derive(Default)]
pub struct EventBus {
    subs: Mutex<Vec<Sub>>,
}

impl EventBus {
    /// Adds a session; the token is cancelled when the bus closes it (it stopped reading).
    pub fn subscribe(&self, id: u64, tx: SessionTx) -> CancellationToken {
        let closed = CancellationToken::new();
        self.subs.lock().expect("lock").push(Sub {
            id,
            tx,
            closed: closed.clone(),
        });
        closed
    }

    pub fn unsubscribe(&self, id: u64) {
        self.subs.lock().expect("lock").retain(|s| s.id != id);
    }

    pub fn sessions(&self) -> usize {
        self.subs.lock().expect("lock").len()
    }

    /// Waits until every session has [`HEADROOM`] free places (at once when they have), closing
    /// a session that frees none within [`STALLED`].
    pub async fn room(&self) {
        let tight: Vec<Sub> = self
            .subs
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.tx.capacity() < HEADROOM)
            .cloned()
            .collect();
        for s in tight {
            // The permits are returned when dropped: this only waits for the room.
            if tokio::time::timeout(STALLED, s.tx.reserve_many(HEADROOM))
                .await
                .is_err()
            {
                warn!(session = s.id, stalled = ?STALLED, "manager session is not reading its events; closing it");
                self.unsubscribe(s.id);
                s.closed.cancel();
            }
        }
    }

    /// Publishes to the sessions with room for it and drops it for the others: for what a
    /// session can miss without harm (a running job's output piece or progress).
    pub fn publish_lossy(&self, msg: Msg) {
        let msg = AgentMessage { msg: Some(msg) };
        for s in self.subs.lock().expect("lock").iter() {
            if s.tx.capacity() > HEADROOM {
                let _ = s.tx.try_send(Ok(msg.clone()));
            }
        }
    }

    pub fn publish(&self, msg: Msg) {
        let msg = AgentMessage { msg: Some(msg) };
        self.subs
            .lock()
            .expect("lock")
            .retain(|s| match s.tx.try_send(Ok(msg.clone())) {
                Ok(()) => true,
                // Producers wait for room first; this is a publisher that did not.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(
                        session = s.id,
                        "manager session's event buffer overflowed; closing it"
                    );
                    s.closed.cancel();
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
        let closed = bus.subscribe(1, tx);
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
        assert!(closed.is_cancelled(), "and its stream is told to end");
    }

    #[tokio::test]
    async fn a_lagging_session_is_dropped_and_the_others_keep_receiving() {
        let bus = EventBus::default();
        let (fast_tx, mut fast) = mpsc::channel(8);
        let (slow_tx, _slow) = mpsc::channel(1);
        let fast_closed = bus.subscribe(1, fast_tx);
        let slow_closed = bus.subscribe(2, slow_tx);
        for _ in 0..3 {
            bus.publish(Msg::Fenced(Fenced { reason: "x".into() }));
            fast.recv().await.unwrap().unwrap();
        }
        assert_eq!(bus.sessions(), 1);
        assert!(slow_closed.is_cancelled() && !fast_closed.is_cancelled());
    }
}
