//! Wire types for NetPulse.
//!
//! `worker` holds the frame protocol spoken between a parent (the node agent) and a
//! `pinned-worker` child over its stdin/stdout; `frame` reads and writes those frames.
//! Each frame is a 4-byte big-endian length followed by one protobuf message.

pub mod frame;

pub mod worker {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/netpulse.worker.v1.rs"));
}
