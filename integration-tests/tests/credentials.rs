//! Credentials by reference, resolved by the node agent: a real OpenBao (`bao server -dev`)
//! with AppRole and token logins, versions, field mappings, a denied and a missing path, the
//! cache expiring and the server down; profiles from a directory changed while the agent runs;
//! the manager's own checks; the CLI. No device password shows in any log or answer.

use std::time::Duration;

use integration_tests::bao::Bao;
use integration_tests::cluster::{Options, TestCluster, is_final, workspace_bin};
use netpulse_proto::api::*;
use serde_json::json;

const PASSWORD: &str = "Np-ref-pass-5c2e91";
const SECRET: &str = "Np-ref-enable-7d40aa";

fn options(agent_args: Vec<String>, authorized_key: Option<String>) -> Options {
    let mut devsim: Vec<String> = vec!["--devices".into(), "cisco_ios=2".into()];
    if let Some(k) = authorized_key {
        devsim.extend(["--authorized-key".into(), k]);
    }
    Options {
        devsim,
        password: PASSWORD.into(),
        secret: SECRET.into(),
        agent_args,
        ..Default::default()
    }
}

fn vault(path: &str, edit: impl FnOnce(&mut VaultSecret)) -> CredentialRef {
    let mut v = VaultSecret {
        path: path.into(),
        ..Default::default()
    };
    edit(&mut v);
    CredentialRef {
        source: Some(credential_ref::Source::Vault(v)),
    }
}

fn profile(name: &str) -> CredentialRef {
    CredentialRef {
        source: Some(credential_ref::Source::Profile(name.into())),
    }
}

/// A request for device `i` that logs in by `credential`, nothing inline.
fn by_ref(
    c: &TestCluster,
    i: usize,
    credential: CredentialRef,
    strategy: Strategy,
) -> ExecuteRequest {
    let mut r = c.request(i, &["show clock"]);
    let conn = r.connection.as_mut().unwrap();
    conn.password.clear();
    conn.secret.clear();
    conn.username.clear();
    conn.credential = Some(credential);
    r.strategy = strategy as i32;
    r.wait = true;
    r
}

async fn run(c: &TestCluster, manager: usize, r: ExecuteRequest) -> Job {
    let mut jobs = c.jobs(manager).await.unwrap();
    let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    assert!(is_final(&j), "{j:?}");
    j
}

fn failed(j: &Job, kind: &str, says: &str) {
    assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
    let e = j.error.as_ref().unwrap();
    assert_eq!(e.kind, kind, "{j:?}");
    assert!(
        e.message.contains(says),
        "{:?} should say {says:?}",
        e.message
    );
}

fn no_secret_anywhere(c: &TestCluster, answers: &[Job]) {
    for s in [PASSWORD, SECRET] {
        assert!(!c.logs().contains(s), "{s} in a log");
        for j in answers {
            assert!(!format!("{j:?}").contains(s), "{s} in an answer");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_secrets_resolve_on_the_agent_with_approle() {
    let mut bao = Bao::start().await;
    let (role_id, secret_id) = bao.approle("net/").await;
    bao.put(
        "net/ios",
        json!({"username": "admin", "password": "stale-pass"}),
    )
    .await;
    bao.put(
        "net/ios",
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    bao.put(
        "net/mapped",
        json!({"login": "admin", "pass": PASSWORD, "enable": SECRET}),
    )
    .await;
    bao.put(
        "net/rotating",
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    bao.put("lab/x", json!({"username": "admin", "password": PASSWORD}))
        .await;
    // A second KV v2 engine at `kv`, holding a key login under mapped names.
    bao.call(
        reqwest::Method::POST,
        "sys/mounts/kv",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    let key = devsim::server::random_host_key();
    let locked = key
        .encrypt(&mut rand::rng(), "Np-key-phrase-3e")
        .unwrap()
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap()
        .to_string();
    bao.call(
        reqwest::Method::POST,
        "kv/data/net/keyed",
        Some(json!({"data": {"user": "admin", "pem": locked, "phrase": "Np-key-phrase-3e"}})),
    )
    .await;
    bao.policy_paths(&["secret/data/net/*", "kv/data/net/*"])
        .await;
    let mut c = TestCluster::start(options(
        vec![
            "--vault-addr".into(),
            bao.addr.clone(),
            "--vault-approle-role-id".into(),
            role_id,
            "--vault-approle-secret-id-file".into(),
            secret_id.display().to_string(),
            "--vault-allowed-paths".into(),
            "secret/net,secret/lab/x-not-this,kv/net".into(),
            "--vault-cache-ttl-seconds".into(),
            "5".into(),
        ],
        Some(key.public_key().to_openssh().unwrap()),
    ))
    .await
    .unwrap();
    let mut answers = Vec::new();

    // The latest version, pinned; version 1 holds a stale password.
    let j = run(
        &c,
        0,
        by_ref(&c, 0, vault("net/ios", |_| {}), Strategy::Pinned),
    )
    .await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    answers.push(j);
    let j = run(
        &c,
        0,
        by_ref(&c, 1, vault("net/ios", |v| v.version = 1), Strategy::Fifo),
    )
    .await;
    failed(&j, "auth_failed", "");
    answers.push(j);
    // A field mapping: the secret's own key names, the enable secret among them.
    let mapped = vault("net/mapped", |v| {
        v.username_field = "login".into();
        v.password_field = "pass".into();
        v.secret_field = "enable".into();
    });
    let mut r = by_ref(&c, 1, mapped, Strategy::Fifo);
    r.enable_mode = true;
    r.commands = vec!["show running-config".into()];
    let j = run(&c, 0, r).await;
    assert_eq!(
        j.status(),
        JobStatus::Succeeded,
        "enable needs the mapped secret: {j:?}"
    );
    answers.push(j);
    // Another mount, a private key and its passphrase under the secret's own names.
    let keyed = vault("net/keyed", |v| {
        v.mount = "kv".into();
        v.username_field = "user".into();
        v.private_key_field = "pem".into();
        v.private_key_passphrase_field = "phrase".into();
    });
    let j = run(&c, 0, by_ref(&c, 1, keyed, Strategy::Fifo)).await;
    assert_eq!(
        j.status(),
        JobStatus::Succeeded,
        "a key login from kv/: {j:?}"
    );
    answers.push(j);
    // Outside the allow-list (whole segments), and missing.
    let j = run(&c, 0, by_ref(&c, 1, vault("lab/x", |_| {}), Strategy::Fifo)).await;
    failed(
        &j,
        "permission_denied",
        "secret/lab/x is not under --vault-allowed-paths",
    );
    answers.push(j);
    let j = run(
        &c,
        0,
        by_ref(&c, 1, vault("net/absent", |_| {}), Strategy::Fifo),
    )
    .await;
    failed(
        &j,
        "credentials_unavailable",
        "vault has no secret at secret/net/absent",
    );
    answers.push(j);

    // The cache: a changed secret is used once the cached read expires.
    let rotating = || by_ref(&c, 1, vault("net/rotating", |_| {}), Strategy::Fifo);
    let j = run(&c, 0, rotating()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    bao.put(
        "net/rotating",
        json!({"username": "admin", "password": "rotated-wrong"}),
    )
    .await;
    let j = run(&c, 0, rotating()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "the cached read: {j:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let j = run(&c, 0, rotating()).await;
        if j.status() == JobStatus::Failed {
            failed(&j, "auth_failed", "");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A manager told the allow-list refuses at once; one that refuses inline secrets too.
    c.opts.manager_args = vec![
        "--vault-allowed-paths".into(),
        "secret/net".into(),
        "--refuse-inline-secrets".into(),
    ];
    c.managers.push(c.spawn_manager("manager-2").unwrap());
    c.wait_nodes(1, 1).await.unwrap();
    let mut jobs = c.jobs(1).await.unwrap();
    let e = jobs
        .execute(c.authed(by_ref(&c, 1, vault("lab/x", |_| {}), Strategy::Fifo)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("secret/lab/x is not under"), "{e:?}");
    let e = jobs
        .execute(c.authed(c.request(0, &["show clock"])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("--refuse-inline-secrets"), "{e:?}");
    let j = run(
        &c,
        1,
        by_ref(&c, 0, vault("net/ios", |_| {}), Strategy::Pinned),
    )
    .await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    answers.push(j);

    // The server down: an uncached secret cannot be had, and the job says why.
    bao.kill().await;
    let j = run(
        &c,
        0,
        by_ref(
            &c,
            1,
            vault("net/mapped", |v| v.version = 1),
            Strategy::Fifo,
        ),
    )
    .await;
    failed(&j, "credentials_unavailable", "is not reachable");
    answers.push(j);
    no_secret_anywhere(&c, &answers);
    assert!(
        !c.logs().contains("Np-key-phrase-3e"),
        "the key's passphrase in a log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_a_directory_and_vault_tokens() {
    let bao = Bao::start().await;
    let token = bao.token_file("net/").await;
    bao.put(
        "net/ios",
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    std::fs::write(
        &lab,
        format!("username = \"admin\"\npassword = \"{PASSWORD}\"\nsecret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let c = TestCluster::start(options(
        vec![
            "--credential-profiles-dir".into(),
            dir.path().display().to_string(),
            "--vault-addr".into(),
            bao.addr.clone(),
            "--vault-token-file".into(),
            token.display().to_string(),
            "--vault-allowed-paths".into(),
            "secret/net/".into(),
        ],
        None,
    ))
    .await
    .unwrap();
    let mut answers = Vec::new();
    let j = run(
        &c,
        0,
        by_ref(&c, 0, vault("net/ios", |_| {}), Strategy::Fifo),
    )
    .await;
    assert_eq!(j.status(), JobStatus::Succeeded, "token auth: {j:?}");
    answers.push(j);
    let mut r = by_ref(&c, 0, profile("lab"), Strategy::Pinned);
    r.enable_mode = true;
    let j = run(&c, 0, r).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    answers.push(j);

    // The CLI names a profile; no password is set anywhere in its environment.
    let d = c.device(1);
    let out = tokio::process::Command::new(workspace_bin("netpulse"))
        .args(["exec", "--host", "127.0.0.1", "--port", &d.port.to_string()])
        .args([
            "--device-type",
            &d.device_type,
            "--credential-profile",
            "lab",
        ])
        .args(["--json", "show clock"])
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");

    // The profile changes while the agent runs: the next job logs in with the new one.
    std::fs::write(&lab, "username = \"admin\"\npassword = \"changed-wrong\"\n").unwrap();
    let j = run(&c, 0, by_ref(&c, 1, profile("lab"), Strategy::Fifo)).await;
    failed(&j, "auth_failed", "");
    answers.push(j);
    let j = run(&c, 0, by_ref(&c, 1, profile("nobody"), Strategy::Fifo)).await;
    failed(
        &j,
        "credentials_unavailable",
        "credential profile nobody: no file",
    );
    answers.push(j);
    no_secret_anywhere(&c, &answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_login_exchanges_the_pods_token() {
    let bao = Bao::start().await;
    bao.policy_paths(&["secret/data/net/*"]).await;
    let issuer = integration_tests::bao::TokenIssuer::new();
    let subject = "system:serviceaccount:netpulse:netpulse-agent";
    bao.kubernetes_login(&issuer, subject).await;
    bao.put(
        "net/ios",
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("token");
    // First another subject's token (a pod of another service account): refused at login.
    std::fs::write(&jwt, issuer.token("system:serviceaccount:other:intruder")).unwrap();
    let c = TestCluster::start(options(
        vec![
            "--vault-addr".into(),
            bao.addr.clone(),
            "--vault-kubernetes-role".into(),
            "netpulse".into(),
            "--vault-kubernetes-jwt-file".into(),
            jwt.display().to_string(),
            "--vault-allowed-paths".into(),
            "secret/net".into(),
        ],
        None,
    ))
    .await
    .unwrap();
    let request = || by_ref(&c, 0, vault("net/ios", |_| {}), Strategy::Fifo);
    let refused = run(&c, 0, request()).await;
    failed(
        &refused,
        "credentials_unavailable",
        "vault refused the login at auth/kubernetes",
    );
    // The pod's own token (the file is read at each login, as a projected token rotates).
    std::fs::write(&jwt, issuer.token(subject)).unwrap();
    let j = run(&c, 0, request()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    no_secret_anywhere(&c, &[refused, j]);
    let token = std::fs::read_to_string(&jwt).unwrap();
    assert!(
        !c.logs().contains(&token),
        "the service-account token in a log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_namespace_is_read_from_its_own_mounts() {
    let bao = Bao::start().await;
    let post = reqwest::Method::POST;
    bao.call(post.clone(), "sys/namespaces/team-a", Some(json!({})))
        .await;
    let kv = json!({"type": "kv", "options": {"version": "2"}});
    bao.call_in(Some("team-a"), post.clone(), "sys/mounts/secret", Some(kv))
        .await;
    let inside = json!({"data": {"username": "admin", "password": PASSWORD}});
    bao.call_in(
        Some("team-a"),
        post.clone(),
        "secret/data/net/ios",
        Some(inside),
    )
    .await;
    // The same path outside the namespace holds a wrong password.
    bao.put(
        "net/ios",
        json!({"username": "admin", "password": "outside-wrong"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &bao.root_token).unwrap();
    let c = TestCluster::start(options(
        vec![
            "--vault-addr".into(),
            bao.addr.clone(),
            "--vault-namespace".into(),
            "team-a".into(),
            "--vault-token-file".into(),
            token.display().to_string(),
            "--vault-allowed-paths".into(),
            "secret/net".into(),
        ],
        None,
    ))
    .await
    .unwrap();
    let j = run(
        &c,
        0,
        by_ref(&c, 0, vault("net/ios", |_| {}), Strategy::Fifo),
    )
    .await;
    assert_eq!(j.status(), JobStatus::Succeeded, "read in team-a: {j:?}");
    assert!(!c.logs().contains(&bao.root_token), "the token in a log");
}
