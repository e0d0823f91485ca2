//! Length-delimited protobuf frames over any async byte stream.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts. Outputs of several MB must fit; anything near this is a bug
/// or an attack, and is refused rather than buffered.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge(usize),
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error("frame does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("frame i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends `msg` as one frame to `out`.
pub fn encode_frame<M: Message>(msg: &M, out: &mut Vec<u8>) {
    let len = msg.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(out).expect("vec has room");
}

/// Writes one frame and flushes, so the peer sees it at once.
pub async fn write_frame<M: Message, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &M,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    scratch.clear();
    encode_frame(msg, scratch);
    w.write_all(scratch).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` means a clean end of stream between frames.
pub async fn read_frame<M: Message + Default, R: AsyncRead + Unpin>(
    r: &mut R,
    scratch: &mut Vec<u8>,
) -> Result<Option<M>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    scratch.clear();
    scratch.resize(len, 0);
    r.read_exact(scratch).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(M::decode(scratch.as_slice())?))
}

/// Reads frames from a stream and can be used in `select!`: bytes are kept in its buffer
/// between calls, so a `recv` that is dropped half-way loses nothing.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: bytes::BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            // Small to start: an agent holds one per worker, ten thousand of them; a larger
            // frame reserves what it needs.
            buf: bytes::BytesMut::with_capacity(1024),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream. Cancel-safe.
    pub async fn recv<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_FRAME_BYTES {
                    return Err(FrameError::TooLarge(len));
                }
                if self.buf.len() >= 4 + len {
                    let frame = self.buf.split_to(4 + len);
                    return Ok(Some(M::decode(&frame[4..])?));
                }
                self.buf.reserve(4 + len - self.buf.len());
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{ParentFrame, Shutdown, parent_frame};

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msg = ParentFrame {
            frame: Some(parent_frame::Frame::Shutdown(Shutdown {})),
        };
        let mut scratch = Vec::new();
        write_frame(&mut a, &msg, &mut scratch).await.unwrap();
        drop(a);
        let got: Option<ParentFrame> = read_frame(&mut b, &mut scratch).await.unwrap();
        assert_eq!(got, Some(msg));
        let end: Option<ParentFrame> = read_frame(&mut b, &mut scratch).await.unwrap();
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn frame_reader_survives_cancellation_mid_frame() {
        let (mut a, b) = tokio::io::duplex(1024);
        let msg = ParentFrame {
            frame: Some(parent_frame::Frame::Shutdown(Shutdown {})),
        };
        let mut bytes = Vec::new();
        encode_frame(&msg, &mut bytes);
        encode_frame(&msg, &mut bytes);
        let mut r = FrameReader::new(b);
        a.write_all(&bytes[..3]).await.unwrap();
        // Cancelled while only part of the header is there: nothing may be lost.
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            r.recv::<ParentFrame>(),
        )
        .await;
        assert!(early.is_err());
        a.write_all(&bytes[3..]).await.unwrap();
        drop(a);
        assert_eq!(r.recv::<ParentFrame>().await.unwrap(), Some(msg.clone()));
        assert_eq!(r.recv::<ParentFrame>().await.unwrap(), Some(msg));
        assert_eq!(r.recv::<ParentFrame>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_and_oversized_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        let err = read_frame::<ParentFrame, _>(&mut b, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_frame::<ParentFrame, _>(&mut b, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)), "{err}");
    }
}
