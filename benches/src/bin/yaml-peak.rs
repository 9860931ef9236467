//! Time and peak memory of validating each hostile YAML case, one fresh
//! process per case, so `VmHWM` is that case's alone.
//!
//!   yaml-peak                 every case, checked and unchecked, each under
//!                             a 4 GiB address-space cap: a table
//!   yaml-peak --write DIR     the cases as DIR/<n>.yaml, for
//!                             `/usr/bin/time -v phoenix-agent validate`
//!   yaml-peak N checked       case N through `AgentConfig::load` (budget first)
//!   yaml-peak N unchecked     case N through `serde_norway::from_str::<Value>`
//!                             alone: what `AgentConfig::load` ran first
//!                             before the budget existed

use std::process::{Command, ExitCode};
use std::time::Instant;

use phoenix_benches::hostile_yaml::cases;
use phoenix_config::AgentConfig;

/// Address space each case may use, in GiB (`ulimit -v`).
const CAP_GIB: u64 = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => table(),
        [flag, dir] if flag == "--write" => write(dir),
        [n, mode] => match n.parse::<usize>() {
            Ok(n) if n < cases().len() => one(n, mode == "unchecked"),
            _ => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: yaml-peak [--write DIR | N checked|unchecked]");
    ExitCode::from(2)
}

fn write(dir: &str) -> ExitCode {
    for (n, (name, make)) in cases().into_iter().enumerate() {
        let path = std::path::Path::new(dir).join(format!("{n}.yaml"));
        if let Err(e) = std::fs::write(&path, make()) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}\t{name}", path.display());
    }
    ExitCode::SUCCESS
}

/// Validate case `n` once; print `verdict<TAB>milliseconds<TAB>VmHWM KiB`.
fn one(n: usize, unchecked: bool) -> ExitCode {
    let text = (cases()[n].1)();
    let started = Instant::now();
    let verdict = if unchecked {
        match serde_norway::from_str::<serde_norway::Value>(&text) {
            Ok(_) => "parsed".to_string(),
            Err(e) => format!("refused: {}", first_words(&e.to_string())),
        }
    } else {
        match AgentConfig::load_with_env(&text, &|_| None) {
            Ok(_) => "accepted".to_string(),
            Err(e) => format!("refused: {}", first_words(&e.0[0].to_string())),
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(text);
    println!("{verdict}\t{ms:.2}\t{}", peak_kib());
    ExitCode::SUCCESS
}

/// The start of an error, enough to tell which rule refused.
fn first_words(message: &str) -> String {
    message.chars().take(72).collect()
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn table() -> ExitCode {
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this binary to run each case in its own process");
        return ExitCode::FAILURE;
    };
    println!("| case | bytes | path | verdict | time | peak RSS (VmHWM) |");
    println!("| --- | ---: | --- | --- | ---: | ---: |");
    for (n, (name, make)) in cases().into_iter().enumerate() {
        let bytes = make().len();
        for mode in ["checked", "unchecked"] {
            // Under an address-space cap: serde_norway alone on the wide
            // bomb would take all the machine's memory before it stops.
            let out = match Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", CAP_GIB << 20))
                .arg(&me)
                .arg(n.to_string())
                .arg(mode)
                .output()
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("case {n}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let line = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<&str> = line.trim().split('\t').collect();
            let (verdict, time, peak) = match fields.as_slice() {
                [verdict, ms, kib] => (
                    verdict.to_string(),
                    format!("{ms} ms"),
                    format!("{:.1} MiB", kib.parse::<f64>().unwrap_or(0.0) / 1024.0),
                ),
                _ if !out.status.success() => (
                    format!("ran out of memory ({})", out.status),
                    "-".to_string(),
                    format!("> {CAP_GIB} GiB"),
                ),
                _ => {
                    eprintln!(
                        "case {n} {mode}: {line} {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    return ExitCode::FAILURE;
                }
            };
            let path = if mode == "checked" {
                "budget + loader"
            } else {
                "serde_norway alone (before)"
            };
            println!("| {name} | {bytes} | {path} | {verdict} | {time} | {peak} |");
        }
    }
    ExitCode::SUCCESS
}
