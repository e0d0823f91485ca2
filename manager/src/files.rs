//! `UploadFile` and `DownloadFile`: a staged file lives on one node, so the manager only
//! routes. An upload goes to the node its header names, or else to a live node serving its
//! device type (the least busy with fifo work); the file id names that node, so a transfer job
//! and a download find it there without a lookup, and no byte of a file touches etcd.
//!
//! This is a proxy between two gRPC streams, so it handles their messages itself: the bytes go
//! through as they come (a few pieces in flight), never gathered.

use std::time::Duration;

use netpulse_model::transfer::StagedId;
use netpulse_proto::api::{
    DownloadFileRequest, FileChunk, StagedFile, UploadFileRequest, UploadHeader,
    upload_file_request::Part,
};
use netpulse_proto::records::NodeRecord;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::cluster::Cluster;
use crate::error::ApiError;

/// Longest wait for the uploader's next piece.
const STALL: Duration = Duration::from_secs(60);

/// The node an upload goes to.
pub fn choose_node<'a>(
    nodes: impl IntoIterator<Item = &'a NodeRecord>,
    h: &UploadHeader,
) -> Result<String, ApiError> {
    let nodes: Vec<&NodeRecord> = nodes.into_iter().collect();
    if !h.node_id.is_empty() {
        return nodes
            .iter()
            .find(|n| n.node_id == h.node_id)
            .map(|n| n.node_id.clone())
            .ok_or_else(|| ApiError::Unavailable(format!("node {} is not live", h.node_id)));
    }
    if h.device_type.is_empty() {
        return Err(ApiError::InvalidArgument(
            "an upload names the node that keeps it (header.node_id) or the device type of the \
             job that will use it (header.device_type)"
                .into(),
        ));
    }
    nodes
        .iter()
        .filter(|n| !n.draining && n.device_types.contains(&h.device_type))
        .min_by_key(|n| (n.fifo_running, n.node_id.clone()))
        .map(|n| n.node_id.clone())
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "no live node that takes jobs serves device_type {:?}",
                h.device_type
            ))
        })
}

async fn next(
    input: &mut Streaming<UploadFileRequest>,
) -> Result<Option<UploadFileRequest>, ApiError> {
    match tokio::time::timeout(STALL, input.message()).await {
        Err(_) => Err(ApiError::InvalidArgument(format!(
            "no upload data for {STALL:?}; the upload is dropped"
        ))),
        Ok(m) => m.map_err(ApiError::from_agent),
    }
}

pub async fn upload(
    cluster: &Cluster,
    mut input: Streaming<UploadFileRequest>,
) -> Result<StagedFile, ApiError> {
    let first = next(&mut input).await?;
    let Some(UploadFileRequest {
        part: Some(Part::Header(h)),
    }) = &first
    else {
        return Err(ApiError::InvalidArgument(
            "an upload starts with its header (device_type or node_id, name, size, sha256)".into(),
        ));
    };
    let node = choose_node(cluster.nodes().values(), h)?;
    let mut agent = cluster.dial(&node).await?;
    let (tx, rx) = mpsc::channel(4);
    let forward = async move {
        let mut msg = first;
        while let Some(m) = msg {
            if tx.send(m).await.is_err() {
                return Ok(()); // the agent ended the call: its answer says why
            }
            msg = next(&mut input).await?;
        }
        Ok::<(), ApiError>(())
    };
    let call = agent.upload(ReceiverStream::new(rx));
    tokio::pin!(call, forward);
    // A broken upload drops the agent's call with it, so the agent never keeps a part.
    let answer = tokio::select! {
        a = &mut call => a,
        f = &mut forward => {
            f?;
            call.await
        }
    };
    answer.map(|r| r.into_inner()).map_err(ApiError::from_agent)
}

pub async fn download(
    cluster: &Cluster,
    req: DownloadFileRequest,
) -> Result<Streaming<FileChunk>, ApiError> {
    let id = StagedId::parse(&req.id)?;
    let mut agent = cluster.dial(&id.node_id).await.map_err(|_| {
        ApiError::NotFound(format!(
            "staged file {} is on node {}, which is not live",
            req.id, id.node_id
        ))
    })?;
    agent
        .download(req)
        .await
        .map(|r| r.into_inner())
        .map_err(ApiError::from_agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, types: &[&str], fifo: u32, draining: bool) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            device_types: types.iter().map(|t| t.to_string()).collect(),
            fifo_running: fifo,
            draining,
            ..Default::default()
        }
    }

    #[test]
    fn uploads_go_to_the_named_node_or_the_least_busy_that_serves_the_type() {
        let nodes = [
            node("a", &["linux"], 3, false),
            node("b", &["linux", "cisco_ios"], 1, false),
            node("c", &["linux"], 0, true),
        ];
        let h = |t: &str, n: &str| UploadHeader {
            device_type: t.into(),
            node_id: n.into(),
            ..Default::default()
        };
        assert_eq!(choose_node(&nodes, &h("linux", "")).unwrap(), "b");
        assert_eq!(choose_node(&nodes, &h("", "a")).unwrap(), "a");
        assert!(matches!(
            choose_node(&nodes, &h("", "z")),
            Err(ApiError::Unavailable(_))
        ));
        assert!(matches!(
            choose_node(&nodes, &h("junos", "")),
            Err(ApiError::Unavailable(_))
        ));
        assert!(matches!(
            choose_node(&nodes, &h("", "")),
            Err(ApiError::InvalidArgument(_))
        ));
    }
}
