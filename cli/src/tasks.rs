//! `netpulse tasks`: long-running tasks on linux hosts (start, read, follow, list, kill).

use std::io::Write;
use std::time::Duration;

use netpulse_proto::api::*;
use serde_json::{Value, json};

use crate::{Api, Login, Outcome, print_json};

#[derive(clap::Args, Debug)]
pub struct TasksArgs {
    #[command(subcommand)]
    cmd: TasksCmd,
}

/// Which host (a linux device, or any device for put and get) and how to log in.
#[derive(clap::Args, Debug)]
pub(crate) struct Host {
    /// Host address.
    #[arg(long)]
    pub(crate) host: String,
    /// SSH port (22 when left out).
    #[arg(long, default_value_t = 22)]
    pub(crate) port: u32,
    #[command(flatten)]
    pub(crate) login: Login,
}

#[derive(clap::Subcommand, Debug)]
enum TasksCmd {
    /// Start a command detached on the host; prints the task.
    Start {
        #[command(flatten)]
        host: Host,
        /// The command (run by sh).
        command: String,
    },
    /// Print a task's output from an offset; with --follow, until the task ends.
    Read {
        #[command(flatten)]
        host: Host,
        id: String,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long)]
        follow: bool,
    },
    /// List the host's tasks.
    List {
        #[command(flatten)]
        host: Host,
    },
    /// Kill a task (its whole process group).
    Kill {
        #[command(flatten)]
        host: Host,
        id: String,
    },
}

fn task_json(t: &Task) -> Value {
    json!({
        "id": t.id, "pid": t.pid, "running": t.running, "exited": t.exited,
        "exit_code": t.exit_code, "killed": t.killed, "started_unix_s": t.started_unix_s,
        "output_bytes": t.output_bytes,
    })
}

fn task_line(t: &Task) -> String {
    let state = match (t.running, t.killed, t.exited) {
        (true, _, _) => "running".to_string(),
        (_, true, _) => "killed".to_string(),
        (_, _, true) => format!("exited {}", t.exit_code),
        _ => "gone".to_string(),
    };
    format!(
        "{}  pid {}  {}  {} bytes",
        t.id, t.pid, state, t.output_bytes
    )
}

fn show(t: &Task, json: bool) {
    if json {
        print_json(&task_json(t));
    } else {
        println!("{}", task_line(t));
    }
}

pub async fn run(api: &Api, a: TasksArgs, json: bool) -> Outcome {
    match a.cmd {
        TasksCmd::Start { host, command } => {
            let req = StartTaskRequest {
                connection: Some(host.login.device(host.host, host.port)?),
                command,
            };
            show(
                &api.jobs().start_task(api.req(req)).await?.into_inner(),
                json,
            );
        }
        TasksCmd::List { host } => {
            let req = ListTasksRequest {
                connection: Some(host.login.device(host.host, host.port)?),
            };
            let tasks = api
                .jobs()
                .list_tasks(api.req(req))
                .await?
                .into_inner()
                .tasks;
            if json {
                print_json(&Value::Array(tasks.iter().map(task_json).collect()));
            } else {
                tasks.iter().for_each(|t| println!("{}", task_line(t)));
            }
        }
        TasksCmd::Kill { host, id } => {
            let req = KillTaskRequest {
                connection: Some(host.login.device(host.host, host.port)?),
                id,
            };
            show(
                &api.jobs().kill_task(api.req(req)).await?.into_inner(),
                json,
            );
        }
        TasksCmd::Read {
            host,
            id,
            mut offset,
            follow,
        } => {
            let connection = Some(host.login.device(host.host, host.port)?);
            loop {
                let req = ReadTaskRequest {
                    connection: connection.clone(),
                    id: id.clone(),
                    offset,
                    max_bytes: 0,
                };
                let out = api.jobs().read_task(api.req(req)).await?.into_inner();
                std::io::stdout()
                    .write_all(&out.data)
                    .map_err(anyhow::Error::from)?;
                std::io::stdout().flush().map_err(anyhow::Error::from)?;
                let running = out.task.as_ref().is_some_and(|t| t.running);
                let more = out.next_offset > offset;
                offset = out.next_offset;
                if !follow || (!running && !more) {
                    if let Some(t) = out.task.filter(|_| !json) {
                        eprintln!("{}", task_line(&t));
                    }
                    break;
                }
                if !more {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(0)
}
