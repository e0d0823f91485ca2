//! The NetPulse manager (in progress): today, the validated form of the public API's requests
//! (`request`), live nodes and a session to each agent (`cluster`), node choice and placement claims in etcd (`placement`), the mapping of API errors to gRPC codes (`error`), and durable job records in
//! etcd with batched writes (`store`). Scheduling and the gRPC services are not built yet; the
//! binary refuses to start.

pub mod cluster;
pub mod error;
pub mod placement;
pub mod request;
pub mod store;
