//! Wire types for NetPulse.
//!
//! `api` is the public API (`netpulse.v1`). `agent` is the gRPC link between a manager and a node agent. `worker` holds the frame protocol spoken between a parent (the node agent) and a
//! `pinned-worker` child over its stdin/stdout; `frame` reads and writes those frames.
//! Each frame is a 4-byte big-endian length followed by one protobuf message.

pub mod auth;
pub mod frame;
pub mod json;

/// Every message of every package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netpulse_descriptor.bin"));
pub mod records;
pub mod runtime;
pub mod tls;

/// Generated code, nested as the protobuf packages are so cross-package references resolve.
#[allow(clippy::all, missing_docs)]
pub mod netpulse {
    /// The public API (`netpulse.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/netpulse.v1.rs"));
    }
    pub mod agent {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/netpulse.agent.v1.rs"));
        }
    }
    pub mod manager {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/netpulse.manager.v1.rs"));
        }
    }
    pub mod worker {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/netpulse.worker.v1.rs"));
        }
    }
}

pub use netpulse::agent::v1 as agent;
pub use netpulse::manager::v1 as manager;
pub use netpulse::v1 as api;
pub use netpulse::worker::v1 as worker;
