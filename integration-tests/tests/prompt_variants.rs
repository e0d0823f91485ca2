//! Every device family devsim knows, end to end through the public API: prompts that differ
//! from a platform's usual shape (a line printed above the prompt, a Junos virtual chassis's
//! `{master:0}`; prompts without the user, `r1>` where `admin@r1>` is usual), and
//! `device_type: autodetect` naming each family's platform.

use std::time::Duration;

use devsim::Flavor;
use integration_tests::cluster::{Options, TestCluster};
use netpulse_proto::api::JobStatus;

const LINE_ABOVE: &str = "{master:0}";

/// Runs each family's version command; with `autodetect`, under that device type, and the
/// job must name the family's platform.
async fn every_family_logs_in_and_runs(variant: &[&str], autodetect: bool) {
    let devices: Vec<String> = Flavor::all()
        .iter()
        .map(|f| format!("{}=1", f.device_type()))
        .collect();
    let mut devsim = vec!["--devices".to_string(), devices.join(",")];
    devsim.extend(variant.iter().map(|s| s.to_string()));
    let c = TestCluster::start(Options {
        devsim,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut failed = Vec::new();
    for i in 0..Flavor::all().len() {
        let device_type = c.device(i).device_type.clone();
        let flavor: Flavor = device_type.parse().unwrap();
        let mut r = c.request(i, &[flavor.version_command()]);
        r.wait = true;
        let expected = if autodetect {
            r.connection.as_mut().unwrap().device_type = "autodetect".into();
            flavor.device_type()
        } else {
            &device_type
        };
        let job = tokio::time::timeout(Duration::from_secs(60), jobs.execute(c.authed(r)))
            .await
            .expect("an answer within 60 s")
            .unwrap()
            .into_inner();
        let output = job.results.first().map_or("", |r| r.output.as_str());
        if job.status() != JobStatus::Succeeded
            || output.is_empty()
            || output.contains(LINE_ABOVE)
            || job.platform != expected
        {
            failed.push(format!(
                "{device_type}: {:?} as {:?} {:?} {output:?}",
                job.status(),
                job.platform,
                job.error
            ));
        }
    }
    assert!(failed.is_empty(), "{variant:?}:\n{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_above_the_prompt_in_every_family() {
    every_family_logs_in_and_runs(&["--prompt-line-above", LINE_ABOVE], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_without_the_user_in_every_family() {
    every_family_logs_in_and_runs(&["--bare-prompt"], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autodetect_names_every_family() {
    every_family_logs_in_and_runs(&[], true).await;
}
