//! The parent side of the frame protocol: spawn a `pinned-worker` process and exchange frames
//! with it. The child gets a cleared environment plus an explicit one, one end of a Unix
//! socket pair as both its stdin and its stdout (the parent holds one descriptor per worker
//! for frames both ways, which matters at ten thousand workers), and is killed if the handle is
//! dropped. `recv` is cancel-safe, so a parent can `select!` on it.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use netpulse_proto::frame::{self, FrameError, FrameReader};
use netpulse_proto::worker::{ParentFrame, WorkerFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, ChildStderr, Command};

/// What happened next to a worker process.
#[derive(Debug)]
pub enum ChildEvent {
    Frame(WorkerFrame),
    /// Its stdout reached end of file.
    Closed,
    /// It wrote something that is not a frame.
    Broken(FrameError),
    /// It exited (frames it wrote before may still be unread).
    Exited(std::io::Result<ExitStatus>),
}

pub struct WorkerChild {
    child: Child,
    /// Frames to the worker; dropping it shuts the socket down for writing (EOF on its stdin).
    stdin: Option<OwnedWriteHalf>,
    stdout: FrameReader<OwnedReadHalf>,
    stderr: Option<ChildStderr>,
    wbuf: Vec<u8>,
}

impl WorkerChild {
    /// Spawns `bin` with `args`, only `env` in its environment, and `stderr` for its logs
    /// (`Stdio::piped()` makes it available from [`WorkerChild::take_stderr`]).
    pub fn spawn(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> std::io::Result<WorkerChild> {
        // Both ends are close-on-exec; the child gets its end as fds 0 and 1 only.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let theirs = std::os::fd::OwnedFd::from(theirs);
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::from(theirs.try_clone()?))
            .stdout(Stdio::from(theirs))
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        // The command holds the child's end until dropped: a worker's exit must close it.
        drop(cmd);
        ours.set_nonblocking(true)?;
        let (stdout, stdin) = UnixStream::from_std(ours)?.into_split();
        let stderr = child.stderr.take();
        Ok(WorkerChild {
            child,
            stdin: Some(stdin),
            stdout: FrameReader::new(stdout),
            stderr,
            wbuf: Vec::new(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    pub async fn send(&mut self, f: &ParentFrame) -> Result<(), FrameError> {
        self.send_all(std::slice::from_ref(f)).await
    }

    /// Writes the frames in one write, so the worker wakes once for all of them.
    pub async fn send_all(&mut self, frames: &[ParentFrame]) -> Result<(), FrameError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| FrameError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
        self.wbuf.clear();
        for f in frames {
            frame::encode_frame(f, &mut self.wbuf);
        }
        stdin.write_all(&self.wbuf).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// The next frame; `Ok(None)` once the worker has closed its stdout. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<WorkerFrame>, FrameError> {
        self.stdout.recv().await
    }

    /// The next frame, end of its stdout, or its exit, whichever comes first. Cancel-safe.
    /// Watching the exit too matters: a grandchild can hold stdout open after the worker died.
    /// After `Closed` or `Exited`, stop calling this and reap with [`WorkerChild::wait`].
    pub async fn next_event(&mut self) -> ChildEvent {
        tokio::select! {
            biased;
            f = self.stdout.recv() => match f {
                Ok(Some(f)) => ChildEvent::Frame(f),
                Ok(None) => ChildEvent::Closed,
                Err(e) => ChildEvent::Broken(e),
            },
            s = self.child.wait() => ChildEvent::Exited(s),
        }
    }

    /// Frames already written to the pipe, read without waiting for more than `quiet`.
    pub async fn drain(&mut self, quiet: std::time::Duration) -> Vec<WorkerFrame> {
        let mut out = Vec::new();
        while let Ok(Ok(Some(f))) = tokio::time::timeout(quiet, self.stdout.recv()).await {
            out.push(f);
        }
        out
    }

    /// Closes the worker's stdin: the worker takes it as "the parent is gone" and exits.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGKILL, without waiting; reap with [`WorkerChild::wait`].
    pub fn start_kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()
    }
}
