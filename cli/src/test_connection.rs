//! `netpulse test`: log in to one device and show how long each step took, without running
//! anything (the TestConnection RPC).

use netpulse_proto::api::{ConnectionTest, TestConnectionRequest, TestConnectionResponse};
use serde_json::{Value, json};

use crate::{Api, Login, Outcome, print_json};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Device address.
    #[arg(long)]
    host: String,
    /// SSH port (22 when left out).
    #[arg(long, default_value_t = 22)]
    port: u32,
    /// Longest the test may take, in seconds (0: the server's default, 60).
    #[arg(long, default_value_t = 0)]
    test_timeout: u32,
    #[command(flatten)]
    login: Login,
}

pub async fn run(api: &Api, a: TestArgs, json: bool) -> Outcome {
    let req = TestConnectionRequest {
        connection: Some(a.login.device(a.host, a.port)?),
        timeout_seconds: a.test_timeout,
    };
    let r = api.jobs().test_connection(api.req(req)).await?.into_inner();
    if json {
        print_json(&to_json(&r));
    } else {
        print!("{}", text(&r));
    }
    Ok(if r.ok { 0 } else { 1 })
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn text(r: &TestConnectionResponse) -> String {
    let mut out = String::new();
    if let Some(e) = &r.error {
        out += &format!("failed: {} ({})\n", e.kind, e.message);
    }
    if let Some(t) = r.result.as_ref().filter(|_| r.ok) {
        for (step, us) in [
            ("tcp", t.tcp_us),
            ("handshake", t.handshake_us),
            ("auth", t.auth_us),
            ("shell", t.shell_us),
            ("prompt", t.prompt_us),
            ("total", t.total_us),
        ] {
            out += &format!("{step:<10} {:>10}\n", ms(us));
        }
        out += &format!(
            "prompt     {}\nhostname   {}\nplatform   {}\nprivileged {}\n",
            t.prompt, t.hostname, t.platform, t.privileged
        );
    }
    out += &format!("node       {}\njob        {}\n", r.node_id, r.job_id);
    out
}

fn to_json(r: &TestConnectionResponse) -> Value {
    let t = r.result.clone().unwrap_or_default();
    let ConnectionTest {
        tcp_us,
        handshake_us,
        auth_us,
        shell_us,
        prompt_us,
        total_us,
        ..
    } = t;
    json!({
        "ok": r.ok,
        "error": r.error.as_ref().map(|e| json!({"kind": e.kind, "message": e.message})),
        "timings_us": {"tcp": tcp_us, "handshake": handshake_us, "auth": auth_us,
            "shell": shell_us, "prompt": prompt_us, "total": total_us},
        "prompt": t.prompt,
        "hostname": t.hostname,
        "platform": t.platform,
        "privileged": t.privileged,
        "node_id": r.node_id,
        "job_id": r.job_id,
    })
}
