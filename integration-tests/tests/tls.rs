//! Who may talk to whom. Mutual TLS on every link: clients to the manager and the manager to
//! its agents. Jobs run end to end; plaintext, a client without a certificate and one signed
//! by another CA are refused by the manager, and the agent refuses a manager without a
//! certificate. Without TLS, agents take sessions only from managers with their token.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, workspace_bin};
use integration_tests::tls::TestPki;
use netpulse_proto::agent::agent_service_client::AgentServiceClient;
use netpulse_proto::agent::{Hello, ManagerMessage, manager_message::Msg};
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::{JobStatus, ListJobsRequest};
use tonic::transport::{Channel, Endpoint};

async fn connect(
    url: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let mut e = Endpoint::from_shared(url.to_string())?.connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        e = e.tls_config(tls)?;
    }
    e.connect().await
}

/// A call on a channel fails when the server refuses the handshake; some refusals only show on
/// the first request (TLS 1.3 sends the client certificate after the handshake completes).
async fn refused(url: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> bool {
    let Ok(channel) = connect(url, tls).await else {
        return true;
    };
    JobServiceClient::new(channel)
        .list_jobs(ListJobsRequest::default())
        .await
        .is_err()
}

#[tokio::test]
async fn mutual_tls_on_the_api_and_the_agent_links() {
    let pki = Arc::new(TestPki::new().unwrap());
    let mut c = TestCluster::start(Options {
        tls: Some(pki.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // The node is seen through the manager's TLS link to the agent.
    c.wait_nodes(0, 1).await.unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut req = c.request(0, &["show clock"]);
    req.wait = true;
    let j = jobs.execute(req).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");

    let manager = format!("https://{}", c.managers[0].addr);
    let ca = || netpulse_proto::tls::client(&pki.ca, None).unwrap();
    assert!(
        refused(&format!("http://{}", c.managers[0].addr), None).await,
        "plaintext is refused"
    );
    assert!(
        refused(&manager, Some(ca())).await,
        "a client without a certificate is refused"
    );
    let stranger = netpulse_proto::tls::client(
        &pki.ca,
        Some((pki.stranger_cert.as_path(), pki.stranger_key.as_path())),
    )
    .unwrap();
    assert!(
        refused(&manager, Some(stranger)).await,
        "a certificate from another CA is refused"
    );
    // A client that does not trust the server's CA refuses it.
    let wrong_ca = netpulse_proto::tls::client(&pki.stranger_cert, None).unwrap();
    assert!(refused(&manager, Some(wrong_ca)).await);

    // The agent takes no session from a manager without a client certificate.
    let agent = format!("https://{}", c.agents[0].addr);
    let session = async {
        let channel = connect(&agent, Some(ca())).await?;
        let hello = ManagerMessage {
            msg: Some(Msg::Hello(Hello {
                manager_id: "intruder".into(),
            })),
        };
        let mut s = AgentServiceClient::new(channel)
            .session(tokio_stream::iter([hello]))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_inner();
        s.message().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("answered")
            .is_err(),
        "the agent refused the session"
    );

    // The CLI over mutual TLS.
    let out = tokio::process::Command::new(workspace_bin("netpulse"))
        .args(["nodes", "list", "--json"])
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .env("NETPULSE_TLS_CA", &pki.ca)
        .env("NETPULSE_TLS_CERT", &pki.client_cert)
        .env("NETPULSE_TLS_KEY", &pki.client_key)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    let out = tokio::process::Command::new(workspace_bin("netpulse"))
        .args(["nodes", "list"])
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .env("NETPULSE_TLS_CA", &pki.ca)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "no client certificate: {out:?}");
    c.shutdown().await;
}

/// Opens a session on the agent as a manager would, with `token` as its bearer token; the
/// agent's first answer, or the refusal.
async fn agent_session(agent: &str, token: Option<&str>) -> Result<(), tonic::Status> {
    let channel = connect(agent, None).await.expect("the port answers");
    let hello = ManagerMessage {
        msg: Some(Msg::Hello(Hello {
            manager_id: "intruder".into(),
        })),
    };
    let mut req = tonic::Request::new(tokio_stream::iter([hello]));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let call = async {
        let mut s = AgentServiceClient::new(channel)
            .session(req)
            .await?
            .into_inner();
        s.message().await.map(|_| ())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("answered")
}

#[tokio::test]
async fn agents_take_sessions_only_from_managers_with_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let (accepted, presented) = (
        dir.path().join("manager-tokens"),
        dir.path().join("agent-token"),
    );
    // Rotation: the agent takes the old and the new token; the manager presents the new one.
    std::fs::write(&accepted, "# old, then new\nold-7e1d\nnew-93fa\n").unwrap();
    std::fs::write(&presented, "new-93fa\n").unwrap();
    let mut c = TestCluster::start(Options {
        agent_args: vec![
            "--manager-tokens-file".into(),
            accepted.display().to_string(),
        ],
        manager_args: vec!["--agent-token-file".into(), presented.display().to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    // The manager's link is open (the node shows), and a job runs through it.
    let mut jobs = c.jobs(0).await.unwrap();
    let mut req = c.request(0, &["show clock"]);
    req.wait = true;
    let j = jobs.execute(req).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");

    let agent = format!("http://{}", c.agents[0].addr);
    for token in [None, Some("new-93f"), Some("guess")] {
        let e = agent_session(&agent, token).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{token:?}: {e:?}");
        assert!(e.message().contains("bearer token"), "{e:?}");
    }
    agent_session(&agent, Some("old-7e1d"))
        .await
        .expect("an accepted token opens a session");
    // Probes reach the health service without a token.
    let health =
        tonic_health::pb::health_client::HealthClient::new(connect(&agent, None).await.unwrap())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
    assert_eq!(health.into_inner().status, 1, "SERVING");
    assert!(!c.logs().contains("new-93fa"), "the token is never logged");

    // A manager without the token gets no session: its node never shows.
    c.opts.manager_args.clear();
    let mut stray = c.spawn_manager("manager-2").unwrap();
    let refused = async {
        loop {
            let log = std::fs::read_to_string(&stray.log).unwrap_or_default();
            if log.contains("agent refused the session") && log.contains("bearer token") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("manager-2's session is refused");
    stray.kill9().await;
    c.shutdown().await;
}

#[tokio::test]
async fn etcd_takes_only_clients_with_a_certificate() {
    let pki = Arc::new(TestPki::new().unwrap());
    let mut c = TestCluster::start(Options {
        etcd_tls: Some(pki.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // The manager and the agent reach etcd with their certificates: the node registered, and
    // a job is recorded and runs.
    let mut jobs = c.jobs(0).await.unwrap();
    let mut req = c.request(0, &["show clock"]);
    req.wait = true;
    let j = jobs.execute(req).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    let mut etcd = c.etcd.client().await;
    let records = etcd
        .get(
            format!("{}/jobs/", c.prefix),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    assert!(!records.kvs().is_empty(), "the job's record is in etcd");

    // Without a client certificate, or in plaintext, etcd answers nothing.
    let endpoint = c.etcd.endpoint.clone();
    let without = etcd_client::ConnectOptions::new()
        .with_tls(netpulse_proto::tls::client(&pki.ca, None).unwrap())
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(3));
    let read = async |opts: Option<etcd_client::ConnectOptions>, url: &str| {
        let mut cl = etcd_client::Client::connect([url], opts).await?;
        cl.get("probe", None).await.map(|_| ())
    };
    assert!(
        read(Some(without), &endpoint).await.is_err(),
        "no client certificate"
    );
    let plain = endpoint.replace("https://", "http://");
    let quick = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    let refused = tokio::time::timeout(Duration::from_secs(10), read(Some(quick), &plain)).await;
    assert!(!matches!(refused, Ok(Ok(()))), "plaintext");
    // A manager whose flags ask for TLS with http:// endpoints is stopped at start.
    let out = tokio::process::Command::new(workspace_bin("manager"))
        .args(["--etcd-endpoints", &plain, "--etcd-ca-file"])
        .arg(&pki.ca)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("https://"),
        "{out:?}"
    );
    c.shutdown().await;
}
