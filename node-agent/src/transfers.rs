//! A transfer job's files on this node: before its worker starts, the PUT's file is found in
//! the staging area (or fetched from its URL into it, unless a file with its hash is there
//! already) and the GET's landing place reserved; when it ends, a GET's file is kept (or
//! removed when the job failed). The worker reads and writes those paths itself, so no file
//! passes through a pipe or a gRPC message on its way to the device.

use std::time::Duration;

use netpulse_model::AgentJob;
use netpulse_proto::api::TransferDirection;
use netpulse_proto::worker::{self as wire, ErrorKind};
use tracing::{info, warn};

use crate::staging::{Staging, StagingError};

type Refusal = (ErrorKind, String);

fn refused(e: StagingError) -> Refusal {
    (ErrorKind::TransferFailed, e.to_string())
}

/// Fills in the transfer's `local_path` (and a GET's `max_bytes`); other jobs pass unchanged.
pub async fn prepare(staging: &Staging, job: &mut AgentJob) -> Result<(), Refusal> {
    let Some(wire::job::Operation::Transfer(t)) = job.frame.operation.as_mut() else {
        return Ok(());
    };
    if t.direction() == TransferDirection::Get {
        let name = t
            .remote_path
            .rsplit(['/', ':'])
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("file");
        let (path, max) = staging.landing(&job.id, name).map_err(refused)?;
        t.local_path = path.to_string_lossy().into_owned();
        t.max_bytes = max;
        return Ok(());
    }
    let path = if !t.staged_file.is_empty() {
        staging.get(&t.staged_file).map_err(refused)?.0
    } else if let Some((path, f)) = staging.by_sha256(&t.sha256) {
        info!(job_id = %job.id, file = %f.id, "a staged file has the url's hash; not fetched again");
        path
    } else {
        let f = fetch(staging, &t.url, &t.sha256, job.timeout).await?;
        staging.get(&f.id).map_err(refused)?.0
    };
    t.local_path = path.to_string_lossy().into_owned();
    Ok(())
}

/// Fetches `url` into the staging area; it must hash to `sha256`.
async fn fetch(
    staging: &Staging,
    url: &str,
    sha256: &str,
    limit: Duration,
) -> Result<netpulse_proto::api::StagedFile, Refusal> {
    let failed = |why: String| (ErrorKind::TransferFailed, format!("fetching {url}: {why}"));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let work = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(failed(format!("the server answered {}", resp.status())));
        }
        let name = url
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && n.len() <= 255)
            .unwrap_or("download");
        let name = name.split(['?', '#']).next().unwrap_or("download");
        let mut w = staging
            .begin(
                if name.is_empty() { "download" } else { name },
                resp.content_length(),
            )
            .await
            .map_err(refused)?;
        while let Some(piece) = resp.chunk().await.map_err(|e| failed(e.to_string()))? {
            w.write(&piece).await.map_err(refused)?;
        }
        w.finish(Some(sha256))
            .await
            .map_err(|e| failed(e.to_string()))
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| failed(format!("not done within the job's timeout ({limit:?})")))?
}

/// Keeps a GET's file once its job succeeded (its id goes into the result), else removes it.
pub fn finished(staging: &Staging, result: &mut wire::JobResult) {
    let Some((part, name)) = staging.take_landing(&result.job_id) else {
        return;
    };
    match result.transfer.as_mut() {
        Some(t) if result.ok => match staging.land(&part, &name, &t.sha256) {
            Ok(f) => t.staged_file = f.id,
            Err(e) => {
                warn!(job_id = %result.job_id, error = %e, "the file got from the device was not kept");
                result.ok = false;
                result.error = Some(wire::Error {
                    kind: wire::ErrorKind::TransferFailed as i32,
                    message: e.to_string(),
                });
            }
        },
        _ => {
            let _ = std::fs::remove_file(&part);
        }
    }
}
