//! The job model: the domain types the manager, the node agent and the worker share.
//!
//! Wire types (`netpulse-proto`) become these types once, where a request enters a process:
//! the manager converts an `ExecuteRequest` into a [`JobRequest`] and the agent converts a
//! `Dispatch` into an [`AgentJob`]; both conversions validate, so code past the edge trusts
//! what it holds and never checks or derives it again. The rules live here once: what a
//! connection needs ([`Connection`]), how a device is keyed ([`DeviceKey`], `host:port`), the
//! ranges and defaults of every duration ([`JobOptions`]), and the closed set of error kinds
//! with their stable names ([`ErrorKind`]), and how a worker's result reads ([`Outcome`]). Secrets are [`Secret`]s: `Debug` never shows
//! them. Which device types exist is not a rule of the model: agents serve them and the
//! manager checks a request against what the live agents serve.

mod command;
mod connection;
pub mod credential;
mod device;
mod dispatch;
mod error;
mod error_kind;
mod outcome;
mod request;
mod secret;
pub mod transfer;

pub use command::{CommandSpec, Parse, pattern, rows, template_name, template_size};
pub use connection::{Connection, JumpHost, SessionOptions};
pub use credential::CredentialRef;
pub use device::DeviceKey;
pub use dispatch::AgentJob;
pub use error::ModelError;
pub use error_kind::ErrorKind;
pub use outcome::Outcome;
pub use request::{JobOptions, JobRequest, Operation, RequestLimits, Strategy};
pub use secret::Secret;
