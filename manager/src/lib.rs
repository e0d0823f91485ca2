//! The NetPulse manager (in progress): today, the validated form of the public API's requests
//! (`request`) and the mapping of API errors to gRPC codes (`error`). Scheduling, durable job
//! records and the gRPC services are not built yet; the binary refuses to start.

pub mod error;
pub mod request;
