//! Long-running tasks on linux hosts, as shell lines run by ordinary jobs on the host's pinned
//! session. A task lives in the host's `~/.netpulse-tasks` as `<id>.cmd` (the command),
//! `.pid` (its process group, made by `setsid`, so it outlives the session and the agent),
//! `.log` (stdout and stderr), `.start`, and `.exit` or `.killed` once it ended. Everything
//! about a task is on the host, tagged by its id, so it is found again whatever restarted.

use netpulse_proto::api::*;

use crate::error::ApiError;
use crate::scheduler::Scheduler;

pub const MAX_COMMAND: usize = 4096;
pub const DEFAULT_READ: u32 = 64 << 10;
pub const MAX_READ: u32 = 1 << 20;
const DIR: &str = "\"$HOME/.netpulse-tasks\"";
const BEGIN: &str = "netpulse-data-begin";
const END: &str = "netpulse-data-end";

/// Runs the lines as a job on the host's pinned session and returns their outputs.
async fn run(
    s: &Scheduler,
    connection: Option<Connection>,
    commands: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let c = connection.ok_or_else(|| ApiError::InvalidArgument("connection is required".into()))?;
    if c.device_type != "linux" {
        return Err(ApiError::InvalidArgument(format!(
            "tasks run on linux hosts: connection.device_type must be \"linux\", got {:?}",
            c.device_type
        )));
    }
    let req = ExecuteRequest {
        connection: Some(c),
        commands,
        strategy: Strategy::Pinned as i32,
        wait: true,
        ..Default::default()
    };
    let job = s.await_end(s.submit(req).await?).await?;
    outputs(&job)
}

fn one(tasks: Vec<Task>, id: &str) -> Result<Task, ApiError> {
    tasks
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("the host has no task {id}")))
}

pub async fn start_task(s: &Scheduler, r: StartTaskRequest) -> Result<Task, ApiError> {
    if r.command.trim().is_empty() || r.command.len() > MAX_COMMAND {
        return Err(ApiError::InvalidArgument(format!(
            "command must be 1..={MAX_COMMAND} bytes, not blank"
        )));
    }
    let id = new_id();
    let out = run(s, r.connection, start(&id, &r.command)).await?;
    one(parse_status(out.last().map_or("", |o| o.as_str())), &id)
}

pub async fn read_task(s: &Scheduler, r: ReadTaskRequest) -> Result<TaskOutput, ApiError> {
    check_id(&r.id)?;
    let max = match r.max_bytes {
        0 => DEFAULT_READ,
        m if m <= MAX_READ => m,
        m => {
            return Err(ApiError::InvalidArgument(format!(
                "max_bytes must be 1..={MAX_READ} (0 for {DEFAULT_READ}), got {m}"
            )));
        }
    };
    let out = run(s, r.connection, read(&r.id, r.offset, max)).await?;
    let task = one(parse_status(out.get(1).map_or("", |o| o.as_str())), &r.id)?;
    let data = out.first().and_then(|o| parse_data(o)).unwrap_or_default();
    Ok(TaskOutput {
        next_offset: r.offset + data.len() as u64,
        data,
        task: Some(task),
    })
}

pub async fn list_tasks(
    s: &Scheduler,
    r: ListTasksRequest,
    retention_minutes: u64,
) -> Result<ListTasksResponse, ApiError> {
    let out = run(s, r.connection, list(retention_minutes)).await?;
    Ok(ListTasksResponse {
        tasks: parse_status(out.last().map_or("", |o| o.as_str())),
    })
}

pub async fn kill_task(s: &Scheduler, r: KillTaskRequest) -> Result<Task, ApiError> {
    check_id(&r.id)?;
    let out = run(s, r.connection, kill(&r.id)).await?;
    one(parse_status(out.last().map_or("", |o| o.as_str())), &r.id)
}

/// A new task id: `t-` and 16 hex digits.
pub fn new_id() -> String {
    format!("t-{:016x}", rand::random::<u64>())
}

pub fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 18
        && id.starts_with("t-")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "a task id is t- and 16 lower-case hex digits, got {id:?}"
        )))
    }
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The status line of each task matching `pattern` (`t-*` or one id): `task <id> <pid>
/// <running> <exit code or -> <killed> <started> <bytes>`. In a subshell: the session's
/// working directory stays as it was.
fn status(pattern: &str) -> String {
    format!(
        "(cd {DIR} 2>/dev/null && for f in {pattern}.pid; do [ -e \"$f\" ] || continue; \
         i=${{f%.pid}}; p=$(cat \"$f\"); r=0; kill -0 \"$p\" 2>/dev/null && r=1; \
         e=$(cat \"$i.exit\" 2>/dev/null); k=0; [ -e \"$i.killed\" ] && k=1; \
         s=$(cat \"$i.start\" 2>/dev/null); b=$(wc -c < \"$i.log\" 2>/dev/null); \
         echo \"task $i $p $r ${{e:--}} $k ${{s:-0}} ${{b:-0}}\"; done)"
    )
}

/// Writes the task's command and its launcher, runs the launcher (which returns once the
/// task's pid is written), then reports the task.
pub fn start(id: &str, command: &str) -> Vec<String> {
    let launcher = [
        format!("cd {DIR} || exit 1"),
        format!(
            "setsid sh -c 'echo $$ > {id}.pid; sh {id}.cmd > {id}.log 2>&1; echo $? > {id}.exit' < /dev/null > /dev/null 2>&1 &"
        ),
        format!("i=0; while [ ! -s {id}.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"),
    ];
    let launcher: Vec<String> = launcher.iter().map(|l| quote(l)).collect();
    vec![
        format!(
            "mkdir -p {DIR} && printf '%s\\n' {} > {DIR}/{id}.cmd && printf '%s\\n' {} > {DIR}/{id}.run && date +%s > {DIR}/{id}.start",
            quote(command),
            launcher.join(" ")
        ),
        format!("sh {DIR}/{id}.run"),
        status(id),
    ]
}

/// Purges tasks that ended more than `retention_minutes` ago, then lists all.
pub fn list(retention_minutes: u64) -> Vec<String> {
    vec![
        format!(
            "(cd {DIR} 2>/dev/null && find . -maxdepth 1 \\( -name 't-*.exit' -o -name 't-*.killed' \\) -mmin +{retention_minutes} | while read -r f; do i=${{f#./}}; rm -f \"${{i%.*}}\".*; done)"
        ),
        status("t-*"),
    ]
}

/// The output from `offset`, base64 between markers, then the task's status.
pub fn read(id: &str, offset: u64, max: u32) -> Vec<String> {
    vec![
        format!(
            "(cd {DIR} 2>/dev/null && [ -e {id}.pid ] && echo {BEGIN} && tail -c +{} {id}.log | head -c {max} | base64 && echo {END})",
            offset + 1
        ),
        status(id),
    ]
}

/// Ends the task's whole process group (TERM, then KILL after 5 s) when it runs, marking it
/// killed, then reports it.
pub fn kill(id: &str) -> Vec<String> {
    vec![
        format!(
            "(cd {DIR} 2>/dev/null && p=$(cat {id}.pid 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && touch {id}.killed && kill -TERM -- -\"$p\" 2>/dev/null; \
             i=0; while [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             [ -n \"$p\" ] && kill -KILL -- -\"$p\" 2>/dev/null; true)"
        ),
        status(id),
    ]
}

/// The tasks in a status output.
pub fn parse_status(output: &str) -> Vec<Task> {
    output
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().strip_prefix("task ")?.split(' ').collect();
            let [id, pid, running, exit, killed, started, bytes] = f.as_slice() else {
                return None;
            };
            check_id(id).ok()?;
            let exit_code = exit.parse::<i32>().ok();
            Some(Task {
                id: id.to_string(),
                pid: pid.parse().ok()?,
                running: *running == "1",
                exited: exit_code.is_some(),
                exit_code: exit_code.unwrap_or(0),
                killed: *killed == "1",
                started_unix_s: started.parse().unwrap_or(0),
                output_bytes: bytes.parse().unwrap_or(0),
            })
        })
        .collect()
}

/// The bytes between the markers of a read's output (None: the task is not there).
pub fn parse_data(output: &str) -> Option<Vec<u8>> {
    let (_, rest) = output.split_once(BEGIN)?;
    let (b64, _) = rest.split_once(END)?;
    let text: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    decode_base64(&text)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

/// The outputs of a task job's commands, or why the job did not give them.
pub fn outputs(job: &Job) -> Result<Vec<String>, ApiError> {
    if job.status() != JobStatus::Succeeded {
        let why = job
            .error
            .as_ref()
            .map_or("no reason given".to_string(), |e| {
                format!("{}: {}", e.kind, e.message)
            });
        return Err(ApiError::Unavailable(format!(
            "the task's job {} on the host ended {}: {why}",
            job.id,
            job.status().as_str_name()
        )));
    }
    Ok(job.results.iter().map(|r| r.output.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_quotes_and_outputs_read_back() {
        let id = new_id();
        assert!(check_id(&id).is_ok(), "{id}");
        for bad in [
            "t-123",
            "x-0123456789abcdef",
            "t-0123456789ABCDEF",
            "t-0123456789abcdeg",
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert_eq!(quote("it's"), r"'it'\''s'");
        let tasks = parse_status(
            "noise\ntask t-0123456789abcdef 4242 1 - 0 1700000000 12\ntask t-00000000000000ff 7 0 3 0 1700000001 0\n",
        );
        assert_eq!(tasks.len(), 2);
        assert!(tasks[0].running && !tasks[0].exited && tasks[0].output_bytes == 12);
        assert!(!tasks[1].running && tasks[1].exited && tasks[1].exit_code == 3);
        let data = parse_data("netpulse-data-begin\naGVsbG8g\nd29ybGQ=\nnetpulse-data-end\n");
        assert_eq!(data.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(
            parse_data("netpulse-data-begin\nnetpulse-data-end").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(parse_data(""), None);
    }
}
