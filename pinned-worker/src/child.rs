//! The parent side of the frame protocol: spawn a `pinned-worker` process and exchange frames
//! with it. The child gets a cleared environment plus an explicit one, stdin/stdout as the
//! frame pipes, and is killed if the handle is dropped.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use netpulse_proto::frame::{self, FrameError};
use netpulse_proto::worker::{ParentFrame, WorkerFrame};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct WorkerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl WorkerChild {
    /// Spawns `bin` with only `env` in its environment and `stderr` for its logs.
    pub fn spawn(bin: &Path, env: &[(&str, &str)], stderr: Stdio) -> std::io::Result<WorkerChild> {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(WorkerChild {
            child,
            stdin: Some(stdin),
            stdout,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn send(&mut self, f: &ParentFrame) -> Result<(), FrameError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| FrameError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
        frame::write_frame(stdin, f, &mut self.wbuf).await
    }

    /// The next frame; `Ok(None)` once the worker has closed its stdout.
    pub async fn recv(&mut self) -> Result<Option<WorkerFrame>, FrameError> {
        frame::read_frame(&mut self.stdout, &mut self.rbuf).await
    }

    /// Closes the worker's stdin: the worker takes it as "the parent is gone" and exits.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    pub fn start_kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()
    }
}
