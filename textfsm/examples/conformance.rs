//! How many of ntc-templates' own fixtures (`tests/<platform>/<command>/*.raw` with the rows
//! expected in `*.yml`) this engine parses exactly, from a checkout of that repository (the
//! fixtures are not on PyPI). Prints the totals, the time taken, and each miss with `-v`.
//!
//! cargo run --release -p netpulse-textfsm --example conformance -- CHECKOUT [-v] [PLATFORM...]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netpulse_textfsm::Template;

fn expected(yml: &Path) -> Option<serde_json::Value> {
    let y: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(yml).ok()?).ok()?;
    let j = serde_json::to_value(y).ok()?;
    Some(j.get("parsed_sample")?.clone())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = args.first().map(PathBuf::from) else {
        eprintln!("usage: conformance CHECKOUT [-v] [PLATFORM...]");
        std::process::exit(64);
    };
    let verbose = args.iter().any(|a| a == "-v");
    let only: Vec<&String> = args[1..].iter().filter(|a| *a != "-v").collect();
    // (platform, command, raw, yml): the command is the directory's name with spaces, as
    // ntc-templates' own tests read it.
    let mut cases: Vec<(String, String, PathBuf, PathBuf)> = Vec::new();
    for plat in std::fs::read_dir(root.join("tests"))
        .expect("a tests/ directory")
        .flatten()
    {
        let pname = plat.file_name().to_string_lossy().into_owned();
        if !plat.path().is_dir() || (!only.is_empty() && !only.iter().any(|o| **o == pname)) {
            continue;
        }
        for cmd in std::fs::read_dir(plat.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let command = cmd.file_name().to_string_lossy().replace('_', " ");
            for f in std::fs::read_dir(cmd.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let raw = f.path();
                if raw.extension().is_some_and(|e| e == "raw") {
                    cases.push((
                        pname.clone(),
                        command.clone(),
                        raw.clone(),
                        raw.with_extension("yml"),
                    ));
                }
            }
        }
    }
    cases.sort();
    let templates = root.join("ntc_templates/templates");
    let index = netpulse_textfsm::Index::new(
        &std::fs::read_to_string(templates.join("index")).expect("the templates' index"),
    )
    .expect("a valid index");
    let mut compiled = std::collections::HashMap::<String, Result<Template, String>>::new();
    let (mut total, mut passed) = (0, 0);
    let (mut compile, mut parse) = (Duration::ZERO, Duration::ZERO);
    let mut platforms = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (platform, command, raw, yml) in &cases {
        let (Ok(r), Some(want)) = (std::fs::read_to_string(raw), expected(yml)) else {
            continue;
        };
        total += 1;
        let start = Instant::now();
        let names = index.find(platform, command).map(<[String]>::to_vec);
        for n in names.iter().flatten() {
            compiled.entry(n.clone()).or_insert_with(|| {
                let text = std::fs::read_to_string(templates.join(n)).map_err(|e| e.to_string())?;
                Template::new(&text).map_err(|e| format!("{n}: {e}"))
            });
        }
        compile += start.elapsed();
        let start = Instant::now();
        let got = match &names {
            None => Err(format!(
                "no template for {platform} {command:?} in the index"
            )),
            Some(names) => names
                .iter()
                .map(|n| compiled[n].as_ref().map_err(Clone::clone))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|ts| netpulse_textfsm::parse_joined(&ts, &r).map_err(|e| e.to_string()))
                .map(|table| table.to_json()),
        };
        parse += start.elapsed();
        let entry = platforms.entry(platform.clone()).or_default();
        entry.0 += 1;
        if got.as_ref().ok() == Some(&want) {
            passed += 1;
            entry.1 += 1;
        } else if verbose {
            let why = match got {
                Err(e) => e,
                Ok(g) => first_difference(&g, &want),
            };
            println!("miss {}: {why}", raw.display());
        }
    }
    println!(
        "{passed}/{total} fixtures parse as expected ({:.1}%); templates compiled in {} ms, outputs parsed in {} ms",
        100.0 * passed as f64 / total.max(1) as f64,
        compile.as_millis(),
        parse.as_millis()
    );
    if verbose {
        for (p, (n, ok)) in platforms {
            println!("  {p}: {ok}/{n}");
        }
    }
}

/// Where two results part: the row count, or the first row and value that differ.
fn first_difference(got: &serde_json::Value, want: &serde_json::Value) -> String {
    let (g, w) = (
        got.as_array().cloned().unwrap_or_default(),
        want.as_array().cloned().unwrap_or_default(),
    );
    if g.len() != w.len() {
        return format!("{} rows, {} expected", g.len(), w.len());
    }
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        for (k, v) in b.as_object().into_iter().flatten() {
            if a.get(k) != Some(v) {
                return format!("row {i}, {k}: {:?}, expected {v:?}", a.get(k));
            }
        }
        if a != b {
            return format!("row {i}: extra values {a}");
        }
    }
    "the same".into()
}
