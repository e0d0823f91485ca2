//! The NetPulse manager: the public gRPC API, scheduling of jobs onto node agents, and
//! durable job records in etcd.
//!
//! A request is validated (`request`) and handed to the `scheduler`, which chooses a node
//! (`placement`: a pinned device's node is claimed in etcd; fifo jobs go to the less loaded
//! of two nodes), writes the job (`store`: group-committed etcd transactions), and sends the
//! dispatch over that node's session (`cluster`: one link per live agent, from an etcd
//! watch). Agent events move the job to its final status (`record`). Any replica answers
//! queries about any job (`jobs`, `admin`); each job is driven by the replica that accepted it,
//! and `recovery` hands a dead replica's jobs to a live one. `service` adapts all of it to
//! gRPC, `auth` checks bearer tokens, `server` assembles the server with health and
//! reflection, `metrics` serves Prometheus metrics, and `error` maps errors to gRPC codes in
//! one place.

pub mod admin;
pub mod auth;
pub mod bulk;
pub mod cluster;
pub mod config;
pub mod error;
pub mod kv;
pub mod listeners;
pub mod metrics;
pub mod placement;
pub mod queries;
pub mod record;
pub mod recovery;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod shed;
pub mod store;
pub mod table;
