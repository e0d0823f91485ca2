//! Files for the transfer tests and benchmark: large test files with their hashes, uploads and
//! downloads through the public API in pieces, and a plain HTTP server that serves one file.

use std::path::Path;

use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::{
    DownloadFileRequest, StagedFile, UploadFileRequest, UploadHeader, upload_file_request::Part,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// The SHA-256 of a file, read in pieces.
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return hex(ctx.finish().as_ref());
        }
        ctx.update(&buf[..n]);
    }
}

/// Writes `size` bytes that do not repeat (xorshift) and returns their SHA-256.
pub fn make_file(path: &Path, size: usize, seed: u64) -> String {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut x = seed | 1;
    let mut left = size;
    let mut buf = Vec::with_capacity(1 << 20);
    while left > 0 {
        buf.clear();
        while buf.len() < (1 << 20).min(left) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate((1 << 20).min(left));
        ctx.update(&buf);
        f.write_all(&buf).unwrap();
        left -= buf.len();
    }
    f.flush().unwrap();
    hex(ctx.finish().as_ref())
}

/// Uploads `path` with `header` (its size filled in when `send_size`), in 1 MiB pieces.
pub async fn upload(
    jobs: &mut JobServiceClient<Channel>,
    token: Option<&str>,
    mut header: UploadHeader,
    path: &Path,
    send_size: bool,
) -> Result<StagedFile, tonic::Status> {
    if send_size {
        header.size = std::fs::metadata(path).unwrap().len();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let path = path.to_path_buf();
    let feeder = tokio::spawn(async move {
        let first = UploadFileRequest {
            part: Some(Part::Header(header)),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        let mut f = tokio::fs::File::open(&path).await.unwrap();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            let piece = UploadFileRequest {
                part: Some(Part::Data(buf[..n].to_vec())),
            };
            if tx.send(piece).await.is_err() {
                return;
            }
        }
    });
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let r = jobs.upload_file(req).await.map(|r| r.into_inner());
    feeder.abort();
    r
}

/// Downloads a staged file into `path`; returns its description.
pub async fn download(
    jobs: &mut JobServiceClient<Channel>,
    token: Option<&str>,
    id: &str,
    offset: u64,
    path: &Path,
) -> Result<StagedFile, tonic::Status> {
    let mut req = tonic::Request::new(DownloadFileRequest {
        id: id.into(),
        offset,
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut stream = jobs.download_file(req).await?.into_inner();
    let mut f = tokio::fs::File::create(path).await.unwrap();
    let mut file = None;
    while let Some(c) = stream.next().await {
        let c = c?;
        if c.file.is_some() {
            file = c.file;
        }
        f.write_all(&c.data).await.unwrap();
    }
    f.flush().await.unwrap();
    Ok(file.expect("the first piece describes the file"))
}

/// Serves `body` to every GET on a loopback port until dropped; the URL of the file.
pub struct FileServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    pub async fn start(name: &str, body: Vec<u8>) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/{name}", listener.local_addr().unwrap());
        let body = std::sync::Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        FileServer { url, task }
    }
}
