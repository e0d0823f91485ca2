//! Mutual TLS on every link: clients to the manager and the manager to its agents. Jobs run
//! end to end; plaintext, a client without a certificate and one signed by another CA are
//! refused by the manager, and the agent refuses a manager without a certificate.

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
