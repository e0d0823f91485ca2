//! The README's first command runs `netpulse-local`: it must bring a cluster up, run its demo
//! and stop every process cleanly.

use std::process::Stdio;
use std::time::Duration;

use integration_tests::cluster::workspace_bin;

#[tokio::test]
async fn the_local_cluster_starts_runs_its_demo_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(workspace_bin("netpulse-local"))
        .args(["--once", "--base-port", "0", "--login-delay-ms", "300"])
        .arg("--state-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("netpulse-local finished within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("grpcurl -plaintext 127.0.0.1:"), "{stdout}");
    assert_eq!(stdout.matches("| pinned |").count(), 5, "{stdout}");
    assert_eq!(stdout.matches("| reused |").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("| fifo |").count(), 3, "{stdout}");
    for name in ["manager-1", "node-1", "node-2", "devsim"] {
        assert!(
            stderr.contains(&format!("{name}: exit status: 0")),
            "{name} did not stop cleanly: {stderr}"
        );
    }
    for log in ["manager-1.log", "node-1.log", "node-2.log"] {
        assert!(dir.path().join(log).exists(), "{log} missing");
    }
}
