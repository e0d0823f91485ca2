//! Long-running tasks on a linux host (a real OpenSSH server) through the public API and the
//! CLI: started detached, read from an offset while they run, ended with their exit code,
//! found again after the agent is killed with SIGKILL and restarted, killed, and purged once
//! past the retention.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, workspace_bin};
use integration_tests::sshd::Sshd;
use netpulse_proto::api::*;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

fn host(sshd: &Sshd) -> Connection {
    sshd.connection()
}

async fn read_until(
    c: &TestCluster,
    conn: &Connection,
    id: &str,
    offset: u64,
    done: impl Fn(&TaskOutput) -> bool,
) -> TaskOutput {
    let deadline = Instant::now() + WAIT;
    let mut jobs = c.jobs(0).await.unwrap();
    loop {
        let r = ReadTaskRequest {
            connection: Some(conn.clone()),
            id: id.into(),
            offset,
            max_bytes: 0,
        };
        let out = jobs.read_task(c.authed(r)).await.unwrap().into_inner();
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} never got there: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list(c: &TestCluster, conn: &Connection) -> Vec<Task> {
    let mut jobs = c.jobs(0).await.unwrap();
    let r = ListTasksRequest {
        connection: Some(conn.clone()),
    };
    jobs.list_tasks(c.authed(r))
        .await
        .unwrap()
        .into_inner()
        .tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outlive_the_session_and_the_agent() {
    let sshd = Sshd::start("").await;
    let mut c = TestCluster::start(Options {
        manager_args: vec!["--task-retention-minutes".into(), "0".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let conn = host(&sshd);
    let mut jobs = c.jobs(0).await.unwrap();
    let start = |command: &str| StartTaskRequest {
        connection: Some(conn.clone()),
        command: command.into(),
    };
    let long = jobs
        .start_task(c.authed(start(
            "for i in 1 2 3; do echo line-$i; done; echo 'it''s' >&2; sleep 300",
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(long.running && long.pid > 0, "{long:?}");
    let short = jobs
        .start_task(c.authed(start("echo done; exit 3")))
        .await
        .unwrap()
        .into_inner();

    // Read while it runs, then from an offset.
    let out = read_until(&c, &conn, &long.id, 0, |o| o.data.ends_with(b"its\n")).await;
    assert_eq!(out.data, b"line-1\nline-2\nline-3\nits\n");
    assert_eq!(out.next_offset, out.data.len() as u64);
    assert!(out.task.as_ref().unwrap().running);
    let tail = read_until(&c, &conn, &long.id, 7, |o| !o.data.is_empty()).await;
    assert_eq!(tail.data, b"line-2\nline-3\nits\n");
    let ended = read_until(&c, &conn, &short.id, 0, |o| o.task.as_ref().unwrap().exited).await;
    let t = ended.task.unwrap();
    assert_eq!((t.exit_code, t.running, t.killed), (3, false, false));
    assert_eq!(ended.data, b"done\n");

    // The agent dies and comes back: the task is found again on the host, still running.
    c.agents[0].kill9().await;
    c.agents[0] = c.spawn_agent("node-1").unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let tasks = loop {
        let mut jobs = c.jobs(0).await.unwrap();
        let r = ListTasksRequest {
            connection: Some(conn.clone()),
        };
        match jobs.list_tasks(c.authed(r)).await {
            Ok(t) => break t.into_inner().tasks,
            Err(e) => assert!(Instant::now() < deadline, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let found = tasks
        .iter()
        .find(|t| t.id == long.id)
        .expect("rediscovered");
    assert!(found.running && found.pid == long.pid, "{found:?}");
    assert!(
        !tasks.iter().any(|t| t.id == short.id),
        "ended, past a retention of 0: purged"
    );

    // Killed: its whole process group.
    let mut jobs = c.jobs(0).await.unwrap();
    let r = KillTaskRequest {
        connection: Some(conn.clone()),
        id: long.id.clone(),
    };
    let killed = jobs.kill_task(c.authed(r)).await.unwrap().into_inner();
    assert!(killed.killed && !killed.running, "{killed:?}");
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-(long.pid as i32)), None);
    assert!(alive.is_err(), "no process of the group is left");

    // The CLI lists them (and purges the killed one).
    let key = sshd.dir.path().join("cli_key");
    std::fs::write(&key, sshd.client_key_pem()).unwrap();
    let out = tokio::process::Command::new(workspace_bin("netpulse"))
        .args([
            "tasks",
            "list",
            "--host",
            "127.0.0.1",
            "--port",
            &sshd.port.to_string(),
        ])
        .args(["--username", &sshd.user, "--device-type", "linux", "--json"])
        .arg("--key-file")
        .arg(&key)
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != long.id.as_str()),
        "{listed}"
    );
    assert!(list(&c, &conn).await.iter().all(|t| t.id != long.id));

    // Bad input gets its code.
    let mut jobs = c.jobs(0).await.unwrap();
    let mut ios = conn.clone();
    ios.device_type = "cisco_ios".into();
    let e = jobs
        .start_task(c.authed(StartTaskRequest {
            connection: Some(ios),
            command: "true".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let r = ReadTaskRequest {
        connection: Some(conn.clone()),
        id: "t-0000000000000000".into(),
        ..Default::default()
    };
    let e = jobs.read_task(c.authed(r)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let r = KillTaskRequest {
        connection: Some(conn.clone()),
        id: "../etc".into(),
    };
    let e = jobs.kill_task(c.authed(r)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}
