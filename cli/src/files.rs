//! `netpulse put` and `netpulse get`: a file to or from a device through a node's staging
//! area, with progress bars for each leg (the upload or download, and the transfer job).

use std::path::{Path, PathBuf};

use netpulse_proto::api::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use crate::tasks::Host;
use crate::{Api, Failure, Outcome, job_code, show_job};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProtocolArg {
    Scp,
    Sftp,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OverwriteArg {
    IfDifferent,
    Always,
    Never,
}

/// How the transfer job runs.
#[derive(clap::Args, Debug)]
struct How {
    /// scp or sftp (the platform's when left out: sftp on linux, scp on network devices).
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Enter enable mode first (IOS's `verify /md5` and `dir` need it).
    #[arg(long)]
    enable: bool,
    /// Run on the device's pinned session instead of a fresh connection.
    #[arg(long)]
    pinned: bool,
    /// Longest run of the transfer job, in seconds (0: the server's default, 300).
    #[arg(long, default_value_t = 0)]
    job_timeout: u32,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    host: Host,
    /// The file to send (or use --url).
    #[arg(required_unless_present = "url")]
    local: Option<PathBuf>,
    /// Where it goes on the device: flash:/image.bin, bootflash:x, /tmp/x.
    #[arg(long)]
    remote: String,
    /// The node agent fetches the file from this http(s) URL instead (with --sha256).
    #[arg(long, requires = "sha256", conflicts_with = "local")]
    url: Option<String>,
    /// The URL's SHA-256.
    #[arg(long)]
    sha256: Option<String>,
    /// if-different (the default: an identical file is not sent again), always, never.
    #[arg(long, value_enum, default_value = "if-different")]
    overwrite: OverwriteArg,
    /// SFTP: send only the rest of a shorter file the device holds (a cut transfer).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    how: How,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    host: Host,
    /// The file on the device.
    #[arg(long)]
    remote: String,
    /// Where it goes here.
    local: PathBuf,
    #[command(flatten)]
    how: How,
}

fn bytes_bar(len: u64, what: &str, json: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what:>9} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ({{elapsed}})"
        ))
        .expect("valid template"),
    );
    bar
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file's SHA-256, so the staging area checks what it stored.
async fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut ctx = Sha256::default();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(ctx.finish());
        }
        ctx.update(&buf[..n]);
    }
}

async fn upload(
    api: &Api,
    device_type: &str,
    path: &Path,
    json: bool,
) -> Result<StagedFile, Failure> {
    let open = |e: std::io::Error| anyhow::anyhow!("{}: {e}", path.display());
    let size = tokio::fs::metadata(path).await.map_err(open)?.len();
    let header = UploadHeader {
        device_type: device_type.to_string(),
        name: path
            .file_name()
            .map_or("file".into(), |n| n.to_string_lossy().into_owned()),
        size,
        sha256: sha256_of(path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ..Default::default()
    };
    let bar = bytes_bar(size, "upload", json);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut f = tokio::fs::File::open(path).await.map_err(open)?;
    let b = bar.clone();
    let feeder = tokio::spawn(async move {
        let header = UploadFileRequest {
            part: Some(upload_file_request::Part::Header(header)),
        };
        if tx.send(header).await.is_err() {
            return Ok(());
        }
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let piece = UploadFileRequest {
                part: Some(upload_file_request::Part::Data(buf[..n].to_vec())),
            };
            if tx.send(piece).await.is_err() {
                return Ok(());
            }
            b.inc(n as u64);
        }
    });
    let staged = api
        .jobs()
        .upload_file(api.req(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await;
    bar.finish_and_clear();
    if let Ok(Err(e)) = feeder.await {
        return Err(anyhow::anyhow!("reading {}: {e}", path.display()).into());
    }
    Ok(staged?.into_inner())
}

/// Submits the transfer and follows it with a bar fed by its progress.
async fn run_transfer(api: &Api, req: ExecuteRequest, json: bool) -> Result<Job, Failure> {
    let job = api.jobs().execute(api.req(req)).await?.into_inner();
    let bar = bytes_bar(0, "transfer", json);
    let mut stream = api
        .jobs()
        .watch_job(api.req(WatchJobRequest { id: job.id.clone() }))
        .await?
        .into_inner();
    let mut last = job;
    while let Some(j) = stream.next().await {
        let j = j?;
        if let Some(p) = &j.transfer_progress {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
        }
        last = j;
    }
    bar.finish_and_clear();
    Ok(last)
}

fn request(host: &Host, how: &How, t: FileTransfer) -> anyhow::Result<ExecuteRequest> {
    Ok(ExecuteRequest {
        connection: Some(host.login.device(host.host.clone(), host.port)?),
        transfer: Some(FileTransfer {
            protocol: match how.protocol {
                None => TransferProtocol::Unspecified,
                Some(ProtocolArg::Scp) => TransferProtocol::Scp,
                Some(ProtocolArg::Sftp) => TransferProtocol::Sftp,
            } as i32,
            ..t
        }),
        strategy: if how.pinned {
            Strategy::Pinned
        } else {
            Strategy::Fifo
        } as i32,
        enable_mode: how.enable,
        timeout_seconds: how.job_timeout,
        ..Default::default()
    })
}

pub async fn put(api: &Api, a: PutArgs, json: bool) -> Outcome {
    let mut req = request(
        &a.host,
        &a.how,
        FileTransfer {
            direction: TransferDirection::Put as i32,
            remote_path: a.remote.clone(),
            url: a.url.clone().unwrap_or_default(),
            sha256: a.sha256.clone().unwrap_or_default(),
            overwrite: match a.overwrite {
                OverwriteArg::IfDifferent => Overwrite::IfDifferent,
                OverwriteArg::Always => Overwrite::Always,
                OverwriteArg::Never => Overwrite::Never,
            } as i32,
            resume: a.resume,
            ..Default::default()
        },
    )?;
    if let Some(local) = &a.local {
        let device_type = req
            .connection
            .as_ref()
            .map(|c| c.device_type.clone())
            .unwrap_or_default();
        let staged = upload(api, &device_type, local, json).await?;
        if let Some(t) = req.transfer.as_mut() {
            t.staged_file = staged.id;
        }
    }
    let job = run_transfer(api, req, json).await?;
    show_job(&job, json);
    Ok(job_code(&job))
}

pub async fn get(api: &Api, a: GetArgs, json: bool) -> Outcome {
    let req = request(
        &a.host,
        &a.how,
        FileTransfer {
            direction: TransferDirection::Get as i32,
            remote_path: a.remote.clone(),
            ..Default::default()
        },
    )?;
    let job = run_transfer(api, req, json).await?;
    let Some(t) = job.transfer.clone().filter(|_| job_code(&job) == 0) else {
        show_job(&job, json);
        return Ok(job_code(&job));
    };
    let mut stream = api
        .jobs()
        .download_file(api.req(DownloadFileRequest {
            id: t.staged_file.clone(),
            offset: 0,
        }))
        .await?
        .into_inner();
    let write = |e: std::io::Error| anyhow::anyhow!("{}: {e}", a.local.display());
    let mut f = tokio::fs::File::create(&a.local).await.map_err(write)?;
    let bar = bytes_bar(t.size, "download", json);
    let mut ctx = Sha256::default();
    while let Some(c) = stream.next().await {
        let c = c?;
        ctx.update(&c.data);
        f.write_all(&c.data).await.map_err(write)?;
        bar.inc(c.data.len() as u64);
    }
    f.flush().await.map_err(write)?;
    bar.finish_and_clear();
    let got = ctx.finish();
    if got != t.sha256 {
        return Err(anyhow::anyhow!(
            "{} has SHA-256 {got}, the device's file {}",
            a.local.display(),
            t.sha256
        )
        .into());
    }
    show_job(&job, json);
    Ok(0)
}

/// SHA-256 through ring's digest, which the TLS stack links already.
struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> String {
        hex(self.0.finish().as_ref())
    }
}
