//! `netpulse exec --follow`: the job's output printed as the device sends it (the job's
//! `stream_output`), each command under a header, then what the pieces missed from the final
//! job, and its summary.

use std::io::Write;

use netpulse_proto::api::*;
use tokio_stream::StreamExt;

use crate::{Api, Failure, Outcome, job_code, show_job};

fn commands(req: &ExecuteRequest) -> Vec<String> {
    if req.command_specs.is_empty() {
        req.commands.clone()
    } else {
        req.command_specs
            .iter()
            .map(|c| c.command.clone())
            .collect()
    }
}

pub async fn exec(api: &Api, mut req: ExecuteRequest, json: bool) -> Outcome {
    req.stream_output = true;
    req.wait = false;
    let names = commands(&req);
    let job = api.jobs().execute(api.req(req)).await?.into_inner();
    let mut stream = api
        .jobs()
        .watch_job(api.req(WatchJobRequest { id: job.id.clone() }))
        .await?
        .into_inner();
    // What each command's pieces printed so far.
    let mut printed: Vec<Option<String>> = vec![None; names.len()];
    let mut current = None;
    let mut out = std::io::stdout();
    let mut last = job;
    while let Some(j) = stream.next().await {
        let j: Job = j.map_err(Failure::from)?;
        if let (Some(c), false) = (&j.output_chunk, json) {
            let i = c.command_index as usize;
            if let Some(done) = printed.get_mut(i) {
                let done = done.get_or_insert_with(String::new);
                // A piece after a gap is left for the final output.
                if c.offset == done.len() as u64 {
                    if current != Some(i) {
                        let _ = writeln!(out, "## {}", names[i]);
                        current = Some(i);
                    }
                    let _ = out.write_all(c.text.as_bytes());
                    let _ = out.flush();
                    done.push_str(&c.text);
                }
            }
        }
        last = j;
    }
    if json {
        show_job(&last, json);
        return Ok(job_code(&last));
    }
    for (i, r) in last.results.iter().enumerate() {
        match printed.get(i).cloned().flatten() {
            Some(done) if r.output.starts_with(done.trim_end()) => {
                let rest = r.output[done.trim_end().len()..].trim_start_matches('\n');
                if !rest.is_empty() {
                    let _ = writeln!(out, "{rest}");
                }
            }
            _ => {
                let _ = writeln!(out, "## {} ({}, {} ms)", r.command, r.status, r.duration_ms);
                let _ = writeln!(out, "{}", r.output.trim_end());
            }
        }
        if !r.error.is_empty() {
            let _ = writeln!(out, "error: {}", r.error);
        }
    }
    eprintln!("{}", crate::render::job_summary(&last));
    Ok(job_code(&last))
}
