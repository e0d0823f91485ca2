//! `devsim`: simulated network devices behind a real SSH server, for tests, benchmarks and demos.
//!
//! Each simulated device listens on its own TCP port and speaks one CLI dialect
//! ([`Flavor`]): login banner, prompts that follow the mode (user, privileged, configuration
//! and its sub-modes), paging that stays on until the dialect's paging-off command is sent, a
//! running configuration that configuration mode really changes, vendor error text for rejected
//! input, enable with a secret, save and commit.
//!
//! How it works: [`server::spawn_device`] binds a listener and accepts connections; every
//! connection runs a russh server session whose shell channel feeds bytes into a
//! [`shell::Shell`], a pure state machine that turns input bytes into output bytes. The
//! per-dialect command handlers live in `cisco`, `junos` and `huawei`, behind the shell's
//! `Personality` trait; `vendor` picks one per flavor. Faults are injected per
//! device through [`server::Device`]: drop every connection, freeze (stop reading and writing
//! the socket, like a hung box), close idle sessions like a device's exec-timeout, refuse auth.

mod cisco;
mod config;
pub mod flash;
mod generic;
mod huawei;
mod junos;
pub mod model;
mod models;
mod models_more;
pub mod server;
pub mod shell;
pub mod subshell;
mod vendor;

pub use server::{Device, DeviceSpec, spawn_device};
pub use shell::Flavor;
