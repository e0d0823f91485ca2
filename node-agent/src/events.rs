//! Fan-out of agent events to every connected manager session.
//!
//! Each session owns a bounded channel that is also its gRPC response stream, so an event
//! crosses no extra task. A session that falls behind by a full channel is closed rather than
//! allowed to stall the workers or buffer without bound; its manager reconnects and resyncs.

use std::sync::Mutex;

use netpulse_proto::agent::{AgentMessage, agent_message::Msg};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::warn;

pub type SessionTx = mpsc::Sender<Result<AgentMessage, Status>>;

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

    pub fn publish(&self, msg: Msg) {
        let msg = AgentMessage { msg: Some(msg) };
        self.subs
            .lock()
            .expect("lock")
            .retain(|(id, tx)| match tx.try_send(Ok(msg.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(
                        session = id,
                        "manager session is not reading its events; closing it"
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
