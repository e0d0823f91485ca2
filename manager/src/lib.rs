//! The NetPulse manager: the public gRPC API, scheduling of jobs onto node agents, and
//! durable job records in etcd.
//!
//! A request is validated into the shared job model (`netpulse-model`) and handed to the
//! `scheduler`, which drives each job it accepts: it asks `placement` for a node (a pinned
//! device's node is claimed through the `kv` trait, etcd in production and memory in tests;
//! fifo jobs go to the less loaded of two nodes; only nodes serving the device type count),
//! writes the job (`store`: group-committed etcd transactions), and sends the dispatch over
//! that node's session (`cluster`: one link per live agent, from an etcd watch). The jobs it
//! drives and the rules of their life cycle (which events count, when a job is pending,
//! expired or lost) are the `table`, pure state with unit tests; the scheduler does the I/O
//! its transitions call for (`sweep` acts on what the periodic sweep finds), and `record` turns
//! agent events into the public `Job`. Job
//! `listeners` hear of every job accepted, ended or let go (`metrics` is one). Any replica
//! answers reads about any job (`queries`); `bulk` fans a template out into submits; `admin`
//! holds the cluster operations (nodes, workers, kill, drain); `liveness` keeps this replica's
//! etcd key alive from a thread of its own, and `recovery` hands a dead
//! replica's jobs to a live one, opening the credentials `sealing` kept out of etcd.
//! `credentials` checks what a request may carry or name. `service` adapts all of it to gRPC,
//! `shed` limits requests in flight, `server` assembles the server with bearer-token auth
//! (`netpulse_proto::auth`), health and reflection, and `error` maps errors to gRPC codes in
//! one place.

pub mod admin;
pub mod bulk;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod error;
pub mod files;
pub mod kv;
pub mod listeners;
pub mod live;
pub mod liveness;
pub mod metrics;
pub mod placement;
pub mod queries;
pub mod record;
pub mod recovery;
pub mod render;
pub mod scheduler;
pub mod sealing;
pub mod server;
pub mod service;
pub mod shed;
pub mod store;
mod sweep;
pub mod table;
pub mod tasks;
pub mod webhooks;
mod writer;
