//! The manager's view of the cluster: the live nodes, from etcd, and one session to each node
//! agent.
//!
//! A watcher task lists `<prefix>/nodes/` and then watches it from the listed revision, so no
//! change is missed; on any watch error it lists again. A reconciler keeps exactly one link per
//! live node: it dials the address the agent registered, opens `Session` with `Hello`, forwards
//! every agent event to the manager's event channel, and reconnects with back-off. Messages for
//! a node wait in the link's bounded queue while it reconnects. A node whose record disappears
//! (its lease ended) loses its link.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use netpulse_proto::agent::agent_service_client::AgentServiceClient;
use netpulse_proto::agent::{AgentMessage, Hello, ManagerMessage, manager_message::Msg as Out};
use netpulse_proto::records::{NodeRecord, nodes_prefix};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::{debug, info, warn};

use crate::error::ApiError;

pub type Nodes = Arc<BTreeMap<String, NodeRecord>>;

/// An event from an agent, with the node it came from.
#[derive(Debug)]
pub struct NodeEvent {
    pub node_id: String,
    pub msg: AgentMessage,
}

const LINK_QUEUE: usize = 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A live link: the address it dials, its outbound queue, and its stop switch.
struct Link {
    address: String,
    outbox: mpsc::Sender<ManagerMessage>,
    stop: CancellationToken,
}

/// How this manager reaches agents: over TLS or not, and with the bearer token agents started
/// with `--manager-tokens-file` require.
#[derive(Clone, Default)]
pub struct AgentAccess {
    pub tls: Option<ClientTlsConfig>,
    pub token: Option<netpulse_model::Secret>,
}

pub struct Cluster {
    nodes: watch::Receiver<Nodes>,
    links: Mutex<HashMap<String, Link>>,
    access: AgentAccess,
}

/// An agent client of its own, for a call beside the session (the staging area's files).
pub type AgentClient =
    AgentServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>>;

/// Adds the agents' bearer token, when there is one, to each call.
#[derive(Clone)]
pub struct BearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.0 {
            r.metadata_mut().insert("authorization", b.clone());
        }
        Ok(r)
    }
}

/// How to reach a node's agent: its endpoint and bearer header.
fn endpoint(
    node: &NodeRecord,
    access: &AgentAccess,
) -> Result<(Endpoint, Option<tonic::metadata::AsciiMetadataValue>), String> {
    // Checked printable at start-up (`read_tokens`), so it is a valid header value.
    let bearer = access
        .token
        .as_ref()
        .and_then(|t| format!("Bearer {}", t.expose()).parse().ok());
    let scheme = if access.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = if node.address.contains("://") {
        node.address.clone()
    } else {
        format!("{scheme}://{}", node.address)
    };
    let e = Endpoint::from_shared(url.clone())
        .and_then(|e| match &access.tls {
            Some(tls) => e.tls_config(tls.clone()),
            None => Ok(e),
        })
        .map_err(|e| format!("the node's address {url} is not usable: {e}"))?;
    Ok((e.connect_timeout(DIAL_TIMEOUT).tcp_nodelay(true), bearer))
}

impl Cluster {
    /// Starts the node watcher and the link reconciler; they stop with `shutdown`.
    pub fn start(
        client: Client,
        prefix: &str,
        manager_id: String,
        access: AgentAccess,
        events: mpsc::Sender<NodeEvent>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Cluster> {
        let (tx, rx) = watch::channel(Nodes::default());
        tracker.spawn(watch_nodes(
            client,
            nodes_prefix(prefix),
            tx,
            shutdown.clone(),
        ));
        let cluster = Arc::new(Cluster {
            nodes: rx,
            links: Mutex::new(HashMap::new()),
            access: access.clone(),
        });
        let c = cluster.clone();
        let t = tracker.clone();
        tracker.spawn(async move { c.reconcile(manager_id, access, events, t, shutdown).await });
        cluster
    }

    pub fn nodes(&self) -> Nodes {
        self.nodes.borrow().clone()
    }

    /// A new connection to a live node's agent.
    pub async fn dial(&self, node_id: &str) -> Result<AgentClient, ApiError> {
        let node = self
            .nodes()
            .get(node_id)
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("node {node_id} is not live")))?;
        let (e, bearer) = endpoint(&node, &self.access).map_err(ApiError::Unavailable)?;
        let channel = tokio::time::timeout(DIAL_TIMEOUT, e.connect())
            .await
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "node {node_id} did not answer within {DIAL_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| ApiError::Unavailable(format!("node {node_id} is not reachable: {e}")))?;
        Ok(AgentServiceClient::with_interceptor(
            channel,
            BearerToken(bearer),
        ))
    }

    /// Queues a message for a node's agent. Fails when the node is not live or its queue is
    /// full (the agent is not keeping up or not reachable).
    pub fn send(&self, node_id: &str, msg: Out) -> Result<(), ApiError> {
        let links = self.links.lock().expect("lock");
        let link = links
            .get(node_id)
            .ok_or_else(|| ApiError::Unavailable(format!("node {node_id} is not live")))?;
        link.outbox
            .try_send(ManagerMessage { msg: Some(msg) })
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "node {node_id} is not taking messages (queue full or link down)"
                ))
            })
    }

    async fn reconcile(
        &self,
        manager_id: String,
        access: AgentAccess,
        events: mpsc::Sender<NodeEvent>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let mut nodes = self.nodes.clone();
        loop {
            let current = nodes.borrow_and_update().clone();
            {
                let mut links = self.links.lock().expect("lock");
                links.retain(|id, link| {
                    let keep = current.get(id).is_some_and(|n| n.address == link.address);
                    if !keep {
                        info!(node_id = %id, "node gone or moved; closing its link");
                        link.stop.cancel();
                    }
                    keep
                });
                for (id, rec) in current.iter() {
                    if links.contains_key(id) {
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(LINK_QUEUE);
                    let stop = shutdown.child_token();
                    tracker.spawn(link(
                        rec.clone(),
                        manager_id.clone(),
                        access.clone(),
                        rx,
                        events.clone(),
                        stop.clone(),
                    ));
                    links.insert(
                        id.clone(),
                        Link {
                            address: rec.address.clone(),
                            outbox: tx,
                            stop,
                        },
                    );
                }
            }
            tokio::select! {
                r = nodes.changed() => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn list(
    client: &mut Client,
    prefix: &str,
) -> Result<(BTreeMap<String, NodeRecord>, i64), etcd_client::Error> {
    let r = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let rev = r.header().map_or(0, |h| h.revision());
    let mut map = BTreeMap::new();
    for kv in r.kvs() {
        match serde_json::from_slice::<NodeRecord>(kv.value()) {
            Ok(rec) => {
                map.insert(rec.node_id.clone(), rec);
            }
            Err(e) => {
                warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "ignoring a node record that does not parse")
            }
        }
    }
    Ok((map, rev))
}

async fn watch_nodes(
    mut client: Client,
    prefix: String,
    tx: watch::Sender<Nodes>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let listed = tokio::time::timeout(DIAL_TIMEOUT, list(&mut client, &prefix)).await;
        let failure = match listed {
            Ok(Ok(x)) => Ok(x),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {DIAL_TIMEOUT:?}")),
        };
        let (mut map, rev) = match failure {
            Ok(x) => x,
            Err(error) => {
                warn!(%error, "listing nodes failed; retrying");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => return }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tx.send_replace(Arc::new(map.clone()));
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut stream = match client.watch(prefix.as_str(), Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "watching nodes failed; listing again");
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.cancelled() => return,
            };
            let resp = match msg {
                Ok(Some(r)) if !r.canceled() => r,
                other => {
                    debug!(?other, "node watch ended; listing again");
                    break;
                }
            };
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let id = String::from_utf8_lossy(kv.key())
                    .trim_start_matches(prefix.as_str())
                    .to_string();
                match ev.event_type() {
                    EventType::Put => match serde_json::from_slice::<NodeRecord>(kv.value()) {
                        Ok(rec) => {
                            map.insert(id, rec);
                        }
                        Err(e) => {
                            warn!(node_id = %id, error = %e, "ignoring a node record that does not parse")
                        }
                    },
                    EventType::Delete => {
                        map.remove(&id);
                    }
                }
            }
            tx.send_replace(Arc::new(map.clone()));
        }
    }
}

/// One node's link: dial, hello, pump messages both ways; reconnect until stopped.
async fn link(
    node: NodeRecord,
    manager_id: String,
    access: AgentAccess,
    mut outbox: mpsc::Receiver<ManagerMessage>,
    events: mpsc::Sender<NodeEvent>,
    stop: CancellationToken,
) {
    let (endpoint, bearer) = match endpoint(&node, &access) {
        Ok(x) => x,
        Err(error) => {
            warn!(node_id = %node.node_id, %error, "no link");
            return;
        }
    };
    let url = node.address.clone();
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let dialed = tokio::time::timeout(DIAL_TIMEOUT, endpoint.connect()).await;
        let mut client = match dialed {
            Ok(Ok(channel)) => AgentServiceClient::new(channel),
            other => {
                let error = match other {
                    Ok(Err(e)) => format!("{e:?}"),
                    _ => "timed out".into(),
                };
                debug!(node_id = %node.node_id, %url, %error, "agent not reachable yet");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => return }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let (conn_tx, conn_rx) = mpsc::channel(64);
        let hello = ManagerMessage {
            msg: Some(Out::Hello(Hello {
                manager_id: manager_id.clone(),
            })),
        };
        if conn_tx.send(hello).await.is_err() {
            continue;
        }
        let mut session = tonic::Request::new(ReceiverStream::new(conn_rx));
        if let Some(b) = &bearer {
            session.metadata_mut().insert("authorization", b.clone());
        }
        let mut inbound = match client.session(session).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                warn!(node_id = %node.node_id, error = %e, "agent refused the session");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => return }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        info!(node_id = %node.node_id, %url, "agent session open");
        backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(msg)) => {
                        if events.send(NodeEvent { node_id: node.node_id.clone(), msg }).await.is_err() {
                            return;
                        }
                    }
                    other => {
                        warn!(node_id = %node.node_id, error = ?other.err(), "agent session ended; reconnecting");
                        break;
                    }
                },
                m = outbox.recv() => match m {
                    Some(m) => if conn_tx.send(m).await.is_err() { break },
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
    }
}
