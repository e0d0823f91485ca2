//! The gRPC adapter of the staging area: `Upload` (a header, then the bytes) and `Download`
//! (the file from an offset, in pieces). The one place staging errors become statuses.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use netpulse_proto::api::{
    DownloadFileRequest, FileChunk, StagedFile, UploadFileRequest, upload_file_request::Part,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Status, Streaming};

use crate::staging::{Staging, StagingError};

/// Longest wait for the uploader's next piece, and for a downloader to take one.
const STALL: Duration = Duration::from_secs(60);
/// Bytes per download message.
const PIECE: usize = 1 << 20;

impl From<StagingError> for Status {
    fn from(e: StagingError) -> Status {
        match e {
            StagingError::Full(m) => Status::resource_exhausted(m),
            StagingError::NotFound(m) => Status::not_found(m),
            StagingError::Invalid(m) => Status::invalid_argument(m),
            StagingError::Io(m) => Status::internal(m),
        }
    }
}

async fn next(input: &mut Streaming<UploadFileRequest>) -> Result<Option<Part>, Status> {
    match tokio::time::timeout(STALL, input.message()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no upload data for {STALL:?}; the upload is dropped"
        ))),
        Ok(m) => Ok(m?.and_then(|m| m.part)),
    }
}

pub async fn upload(
    staging: &Staging,
    mut input: Streaming<UploadFileRequest>,
) -> Result<StagedFile, Status> {
    let Some(Part::Header(h)) = next(&mut input).await? else {
        return Err(Status::invalid_argument(
            "an upload starts with its header (name, size, sha256)",
        ));
    };
    let sha256 = h.sha256.to_ascii_lowercase();
    if !sha256.is_empty() && !netpulse_model::transfer::is_sha256(&sha256) {
        return Err(Status::invalid_argument(format!(
            "header.sha256 must be 64 hex digits or empty, got {:?}",
            h.sha256
        )));
    }
    let mut w = staging
        .begin(&h.name, (h.size > 0).then_some(h.size))
        .await?;
    loop {
        match next(&mut input).await? {
            Some(Part::Data(d)) => w.write(&d).await?,
            Some(Part::Header(_)) => {
                return Err(Status::invalid_argument("an upload has one header, first"));
            }
            None => break,
        }
    }
    Ok(w.finish((!sha256.is_empty()).then_some(sha256.as_str()))
        .await?)
}

pub async fn download(
    staging: Arc<Staging>,
    tracker: &TaskTracker,
    req: DownloadFileRequest,
) -> Result<ReceiverStream<Result<FileChunk, Status>>, Status> {
    let (path, file) = staging.get(&req.id)?;
    if req.offset > file.size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end of {} ({} bytes)",
            req.offset, req.id, file.size
        )));
    }
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Status::internal(format!("opening {}: {e}", req.id)))?;
    f.seek(SeekFrom::Start(req.offset))
        .await
        .map_err(|e| Status::internal(format!("seeking in {}: {e}", req.id)))?;
    let (tx, rx) = mpsc::channel(4);
    tracker.spawn(async move {
        let mut first = Some(file);
        let mut buf = vec![0; PIECE];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("reading: {e}"))))
                        .await;
                    return;
                }
            };
            if n == 0 && first.is_none() {
                return;
            }
            let chunk = FileChunk {
                file: first.take(),
                data: buf[..n].to_vec(),
            };
            match tokio::time::timeout(STALL, tx.send(Ok(chunk))).await {
                Ok(Ok(())) if n > 0 => {}
                _ => return,
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
