//! The `netpulse` binary against a real local cluster (etcd, a manager with a token, two node
//! agents, devsim): every subcommand, tables and JSON, and the exit codes.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, workspace_bin};

const TOKEN: &str = "cli-test-token";

struct Cli<'a> {
    c: &'a TestCluster,
}

impl Cli<'_> {
    /// Runs `netpulse` with the manager's address, the token and the device password set in
    /// its environment (as an operator would), and `extra_env` on top.
    async fn run_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(workspace_bin("netpulse"));
        cmd.args(args)
            .env_clear()
            .env("NETPULSE_ADDR", &self.c.managers[0].addr)
            .env("NETPULSE_TOKEN", TOKEN)
            .env("NETPULSE_DEVICE_PASSWORD", "admin")
            .env("NETPULSE_DEVICE_USERNAME", "admin")
            .envs(extra_env.iter().copied())
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("netpulse finished within 60 s")
            .expect("netpulse ran")
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[]).await
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn every_subcommand_against_a_local_cluster() {
    let mut c = TestCluster::start(Options {
        agents: 2,
        tokens: vec![TOKEN.into()],
        devsim: vec!["--devices".into(), "cisco_ios=3".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    c.wait_nodes(0, 2).await.unwrap();
    let cli = Cli { c: &c };
    let port = |i: usize| c.device(i).port.to_string();
    let dir = tempfile::tempdir().unwrap();

    // Exit codes before any job: no token, no manager, bad usage, no password.
    let out = cli
        .run_env(&["nodes", "list"], &[("NETPULSE_TOKEN", "")])
        .await;
    assert_eq!(code(&out), 4, "{}", text(&out));
    assert!(text(&out).contains("Unauthenticated"), "{}", text(&out));
    let out = cli
        .run_env(
            &["nodes", "list"],
            &[("NETPULSE_ADDR", "http://127.0.0.1:1")],
        )
        .await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    let out = cli.run(&["exec", "--host", "127.0.0.1"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = cli
        .run_env(
            &[
                "exec",
                "--host",
                "127.0.0.1",
                "--port",
                &port(0),
                "show clock",
            ],
            &[("NETPULSE_DEVICE_PASSWORD", "")],
        )
        .await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("NETPULSE_DEVICE_PASSWORD"),
        "{}",
        text(&out)
    );

    // nodes list: a table, and JSON.
    let out = cli.run(&["nodes", "list"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NODE "), "{table}");
    assert!(
        table.contains("node-1") && table.contains("node-2"),
        "{table}"
    );
    assert_eq!(
        cli.json(&["nodes", "list"]).await.as_array().unwrap().len(),
        2
    );

    // exec: output printed, then the session is reused; a rejected command fails the job.
    let exec = |extra: &'static [&'static str]| {
        let mut a = vec![
            "exec".to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port(0),
            "--device-type".into(),
            "cisco_ios".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = exec(&["show clock"]);
    let out = cli
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("## show clock (ok, "),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("succeeded"), "{}", text(&out));
    let mut args = vec!["--json".to_string()];
    args.extend(exec(&["show version"]));
    let out = cli
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["session_reused"], true, "{j}");
    assert_eq!(j["strategy"], "pinned");
    let job_id = j["id"].as_str().unwrap().to_string();
    let args = exec(&["bogus words"]);
    let out = cli
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("command_rejected"), "{}", text(&out));
    let out = cli
        .run(&[
            "exec",
            "--host",
            "127.0.0.1",
            "--port",
            &port(0),
            "--device-type",
            "cisco_foo",
            "show clock",
        ])
        .await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("InvalidArgument"), "{}", text(&out));

    // jobs: get, watch (already final), list, cancel of a finished job.
    let out = cli.run(&["jobs", "get", &job_id]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("## show version"), "{}", text(&out));
    let out = cli.run(&["jobs", "watch", &job_id]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let listed = cli.json(&["jobs", "list", "--status", "succeeded"]).await;
    assert!(
        listed.as_array().unwrap().iter().any(|j| j["id"] == job_id),
        "{listed}"
    );
    let out = cli.run(&["jobs", "list", "--status", "done"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = cli.run(&["jobs", "cancel", &job_id]).await;
    assert_eq!(
        code(&out),
        6,
        "a finished job cannot be canceled: {}",
        text(&out)
    );
    let out = cli
        .run(&["jobs", "get", "0123456789abcdef0123456789ab"])
        .await;
    assert_eq!(code(&out), 5, "{}", text(&out));

    // A job that hangs: submitted without waiting, canceled, watched to its end.
    let args = exec(&["--no-wait", "debug hang"]);
    let out = cli
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let hang = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = cli.run(&["jobs", "cancel", &hang]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cli.run(&["jobs", "watch", &hang]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("canceled"), "{}", text(&out));

    // bulk from YAML (defaults + devices) and from CSV, with a device nothing listens on.
    let yaml = write(
        dir.path(),
        "inventory.yaml",
        &format!(
            "defaults:\n  device_type: cisco_ios\n  commands: [show clock]\ndevices:\n  - host: 127.0.0.1\n    port: {}\n  - host: 127.0.0.1\n    port: {}\n    commands: [show version, show clock]\n",
            port(1),
            port(2)
        ),
    );
    let out = cli.run(&["bulk", &yaml]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.matches("succeeded").count(), 2, "{table}");
    assert!(text(&out).contains("2 of 2 succeeded"), "{}", text(&out));
    let csv = write(
        dir.path(),
        "inventory.csv",
        &format!(
            "host,port,device_type,commands\n127.0.0.1,{},cisco_ios,show clock\n127.0.0.1,1,cisco_ios,show clock\n",
            port(1)
        ),
    );
    let out = cli.run(&["--json", "bulk", &csv]).await;
    assert_eq!(code(&out), 1, "one device is unreachable: {}", text(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "failed"], "{b}");
    let bad = write(dir.path(), "bad.yaml", "- host: r1\n  colour: red\n");
    let out = cli.run(&["bulk", &bad]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("device fields"), "{}", text(&out));

    // workers: listed, killed by device; nodes: drained.
    let ws = cli.json(&["workers", "list"]).await;
    let w = ws
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["port"] == c.device(1).port && w["state"] != "exited")
        .unwrap_or_else(|| panic!("a worker for device 1: {ws}"))
        .clone();
    let out = cli.run(&["workers", "list"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(w["worker_id"].as_str().unwrap()),
        "{}",
        text(&out)
    );
    let out = cli
        .run(&["workers", "kill", "--host", "127.0.0.1", "--port", &port(1)])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cli
        .run(&["workers", "kill", "--id", "no-such-worker"])
        .await;
    assert_eq!(code(&out), 5, "{}", text(&out));
    let node = w["node_id"].as_str().unwrap().to_string();
    let d = cli.json(&["nodes", "drain", &node]).await;
    assert_eq!(d["node_id"], node.as_str());
    // The node's etcd record says so within its load refresh (2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = cli.json(&["nodes", "list"]).await;
        let draining = nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node_id"] == node.as_str() && n["draining"] == true);
        if draining {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never draining: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.shutdown().await;
}

/// `netpulse test`, and the connection flags of `exec`: `--key-file` (with its passphrase from
/// the environment, and no password), `--jump-host` with `--jump-key-file` (OpenSSH's sshd as
/// the bastion), `--legacy-algorithms` and `--prompt-pattern` (a bad one exits 2).
#[tokio::test]
async fn test_and_the_connection_flags() {
    use integration_tests::sshd::Sshd;
    let jump = Sshd::start("").await;
    let c = TestCluster::start(Options {
        tokens: vec![TOKEN.into()],
        devsim: vec![
            "--devices".into(),
            "cisco_ios=1".into(),
            "--authorized-key".into(),
            jump.client_key.public_key().to_openssh().unwrap(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let cli = Cli { c: &c };
    let port = c.device(0).port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let locked = jump
        .client_key
        .encrypt(&mut rand::rng(), "phrase-9")
        .unwrap()
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap()
        .to_string();
    let key_file = write(dir.path(), "device_key", &locked);
    let jump_key = write(dir.path(), "jump_key", &jump.client_key_pem());

    let test = [
        "test",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--device-type",
        "cisco_ios",
    ];
    let t = cli.json(&test).await;
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["platform"], "cisco_ios");
    assert_eq!(t["hostname"], "cisco-ios-1");
    assert!(t["timings_us"]["total"].as_u64().unwrap() > 0, "{t}");
    let out = cli.run(&test).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("platform   cisco_ios"),
        "{}",
        text(&out)
    );

    let jump_spec = format!("{}@127.0.0.1:{}", jump.user, jump.port);
    let out = cli
        .run_env(
            &[
                "exec",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--device-type",
                "cisco_ios",
                "--strategy",
                "fifo",
                "--key-file",
                &key_file,
                "--jump-host",
                &jump_spec,
                "--jump-key-file",
                &jump_key,
                "--legacy-algorithms",
                "--prompt-pattern",
                r"^(?P<host>cisco-ios-1)(?:\((?P<mode>[^)]+)\))?(?P<sign>[>#]) ?$",
                "show version",
            ],
            &[
                ("NETPULSE_DEVICE_PASSWORD", ""),
                ("NETPULSE_KEY_PASSPHRASE", "phrase-9"),
            ],
        )
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("Cisco IOS"), "{}", text(&out));
    assert!(!text(&out).contains("## transcript"), "none unless asked");
    let log = std::fs::read_to_string(jump.log()).unwrap();
    assert!(
        log.contains(&format!("target 127.0.0.1 port {port}")),
        "not through the jump host"
    );

    let out = cli
        .run(&[
            "exec",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--device-type",
            "cisco_ios",
            "--prompt-pattern",
            "(",
            "show version",
        ])
        .await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("prompt_pattern"), "{}", text(&out));

    let transcribed = [
        "exec",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--device-type",
        "cisco_ios",
        "--transcript",
        "show clock",
    ];
    let j = cli.json(&transcribed).await;
    let t = j["transcript"].as_str().unwrap();
    assert!(t.contains("[sent] show clock"), "{j}");
    let out = cli.run(&transcribed).await;
    assert!(text(&out).contains("## transcript"), "{}", text(&out));

    // --mode reaches the worker (IOS has no named modes), and autodetect names what it found.
    let device = ["exec", "--host", "127.0.0.1", "--port", &port];
    let moded = [
        &device[..],
        &["--device-type", "cisco_ios", "--mode", "shell", "id"],
    ]
    .concat();
    let out = cli.run(&moded).await;
    assert_ne!(code(&out), 0);
    assert!(
        text(&out).contains("cisco_ios has no mode \"shell\""),
        "{}",
        text(&out)
    );
    let detected = [&device[..], &["--device-type", "autodetect", "show clock"]].concat();
    assert_eq!(cli.json(&detected).await["platform"], "cisco_ios");
    let out = cli.run(&detected).await;
    assert!(text(&out).contains(" as cisco_ios"), "{}", text(&out));

    // --parse: rows from ntc-templates' index, in JSON and under the output.
    let parsed = [
        &device[..],
        &["--device-type", "cisco_ios", "--parse", "show version"],
    ]
    .concat();
    let j = cli.json(&parsed).await;
    assert_eq!(j["results"][0]["parsed"][0]["version"], "15.9(3)M4", "{j}");
    let out = cli.run(&parsed).await;
    assert!(text(&out).contains("## parsed (1 rows)"), "{}", text(&out));

    // --template FILE --var: rendered at the manager, then pushed.
    let template = write(
        dir.path(),
        "ntp.j2",
        "{% for s in servers %}\nntp server {{ s }}\n{% endfor %}\n",
    );
    let pushed = [
        &device[..],
        &[
            "--device-type",
            "cisco_ios",
            "--enable",
            "--template",
            &template,
        ],
        &["--var", r#"servers=["192.0.2.7","192.0.2.8"]"#],
    ]
    .concat();
    let pushed = [&["--json"][..], &pushed].concat();
    let out = cli
        .run_env(&pushed, &[("NETPULSE_DEVICE_SECRET", "enable")])
        .await;
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["results"][1]["command"], "ntp server 192.0.2.8", "{j}");
    // --confirm-within and --confirm-commit reach the worker (IOS has no confirmed commit).
    let timed = [
        &device[..],
        &[
            "--device-type",
            "cisco_ios",
            "--config",
            "--confirm-within",
            "60",
        ],
        &["ntp server 192.0.2.67"],
    ]
    .concat();
    let out = cli.run(&timed).await;
    assert!(
        text(&out).contains("confirm_within_seconds is not available on cisco_ios"),
        "{}",
        text(&out)
    );
    let out = cli
        .run(
            &[
                &device[..],
                &["--device-type", "cisco_ios", "--confirm-commit"],
            ]
            .concat(),
        )
        .await;
    assert!(
        text(&out).contains("cisco_ios has no confirmed commit"),
        "{}",
        text(&out)
    );
    let dry = [
        &device[..],
        &["--device-type", "cisco_ios", "--config", "--dry-run"],
        &["ntp server 192.0.2.66"],
    ]
    .concat();
    let out = cli.run(&dry).await;
    assert!(
        text(&out).contains("## dry run") && text(&out).contains("nothing was sent"),
        "{}",
        text(&out)
    );
    let backed = [
        &device[..],
        &[
            "--device-type",
            "cisco_ios",
            "--enable",
            "--config",
            "--backup",
        ],
        &["ntp server 192.0.2.77"],
    ]
    .concat();
    let out = cli
        .run_env(&backed, &[("NETPULSE_DEVICE_SECRET", "enable")])
        .await;
    assert!(
        text(&out).contains("## configuration diff")
            && text(&out).contains("+ntp server 192.0.2.77"),
        "{}",
        text(&out)
    );
    let out = cli
        .run(
            &[
                &device[..],
                &["--device-type", "cisco_ios", "--template", &template],
            ]
            .concat(),
        )
        .await;
    assert_ne!(code(&out), 0);
    assert!(
        text(&out).contains("does not give: servers"),
        "{}",
        text(&out)
    );
}
