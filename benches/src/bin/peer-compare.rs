//! `peer-compare`: the measuring end of the whole-process comparison against
//! peers (`benches/peer/run.sh` drives it; `docs/BENCHMARKS.md`, "Against
//! peers", has the method and the figures).
//!
//! Every reader is measured as a whole process, the way a user pays for it,
//! not as a function in a criterion loop:
//!
//! - `scrape --reader phoenix|floor`: this process scrapes N times with the
//!   procfs receiver (default configuration, warm identity cache) or with the
//!   floor reader, and reports its own CPU time from `getrusage` (all threads,
//!   nanosecond-based accounting) and its peak RSS;
//! - `http --pid PID --url URL`: another process (prometheus-process-exporter)
//!   is scraped N times over HTTP; its CPU time comes from `/proc/PID/stat`
//!   before and after (all its threads), its RSS from `/proc/PID/status`;
//! - `watch --pid PID --seconds S`: a long-running agent's CPU share (CPU
//!   seconds over wall seconds) and RSS over a window;
//! - `report FILE`: the table and the ratios from the `result` lines the
//!   other subcommands printed.
//!
//! Each measuring subcommand prints one line, `result key=value ...`, so the
//! script can collect them in one file and `report` can compare them.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver};
use phoenix_benches::floor::Floor;
use phoenix_telemetry::registry::Registry;

#[derive(Parser)]
#[command(
    name = "peer-compare",
    version,
    about = "Whole-process CPU and RSS of Phoenix's receiver, the floor reader and peers (see benches/peer/run.sh)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scrape N times in this process and report this process's CPU time and RSS.
    Scrape {
        #[arg(long, value_enum)]
        reader: Reader,
        /// Scrapes measured (after one warm-up scrape, not measured).
        #[arg(long, default_value_t = 20)]
        scrapes: u32,
        /// Reads <root>/proc (a synthetic tree from `phoenix-sim synth` works too).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// A label for the report (default: the reader's name).
        #[arg(long)]
        label: Option<String>,
    },
    /// Scrape a peer's HTTP endpoint N times and report the peer's CPU time and RSS.
    Http {
        /// The peer's process id (its CPU and memory are read from /proc/PID).
        #[arg(long)]
        pid: u32,
        /// host:port/path of the metrics endpoint, e.g. 127.0.0.1:9256/metrics.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 20)]
        scrapes: u32,
        #[arg(long, default_value = "process-exporter")]
        label: String,
    },
    /// Watch a running process for S seconds: CPU share and RSS.
    Watch {
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value = "agent")]
        label: String,
    },
    /// Print the comparison table from a file of `result` lines.
    Report { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum Reader {
    Phoenix,
    Floor,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Scrape {
            reader,
            scrapes,
            root,
            label,
        } => scrape(reader, scrapes.max(1), &root, label),
        Command::Http {
            pid,
            url,
            scrapes,
            label,
        } => http(pid, &url, scrapes.max(1), &label),
        Command::Watch {
            pid,
            seconds,
            label,
        } => watch(pid, seconds.max(1), &label),
        Command::Report { file } => report(&file),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "peer-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn err(message: String) -> io::Error {
    io::Error::other(message)
}

/// PIDs in `<root>/proc`: the population every reader is charged per.
fn population(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("proc"))? {
        let name = entry?.file_name();
        if name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            n += 1;
        }
    }
    Ok(n)
}

/// This process's CPU time (user + system, every thread).
fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of a whole process (all threads, live and exited) from
/// `/proc/PID/stat`, in clock-tick resolution (10 ms at 100 Hz): enough over
/// many scrapes of a peer that spends milliseconds per scrape.
fn proc_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command, which may hold spaces and parentheses.
    let after = stat
        .rsplit_once(')')
        .ok_or_else(|| err(format!("malformed /proc/{pid}/stat")))?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| err(format!("no field {} in /proc/{pid}/stat", i + 3)))
    };
    let total = ticks(11)? + ticks(12)?;
    let hz = phoenix_telemetry::sys::sysconf(libc::_SC_CLK_TCK).unwrap_or(100);
    Ok(Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / hz,
    ))
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn proc_rss(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn scrape(reader: Reader, scrapes: u32, root: &Path, label: Option<String>) -> io::Result<()> {
    let processes = population(root)?;
    let (name, reported, wall, cpu) = match reader {
        Reader::Phoenix => {
            let config = ProcfsConfig {
                root_path: root.to_path_buf(),
                ..ProcfsConfig::default()
            };
            let mut receiver = ProcfsReceiver::new(&config, &Registry::new())
                .map_err(|e| err(format!("procfs receiver on {}: {e:#}", root.display())))?;
            // Warm-up: an agent's identity cache is warm at every scrape but its first.
            let mut reported = receiver.scrape().resources.len();
            let cpu0 = own_cpu();
            let t = Instant::now();
            for _ in 0..scrapes {
                // Dropping the batch is part of the cost: an agent frees every scrape.
                reported = std::hint::black_box(receiver.scrape()).resources.len();
            }
            let wall = t.elapsed();
            ("phoenix", reported, wall, own_cpu().saturating_sub(cpu0))
        }
        Reader::Floor => {
            let mut floor = Floor::new(&root.join("proc"))?;
            let mut reported = floor.pass()?.processes;
            let cpu0 = own_cpu();
            let t = Instant::now();
            for _ in 0..scrapes {
                reported = std::hint::black_box(floor.pass()?).processes;
            }
            let wall = t.elapsed();
            ("floor", reported, wall, own_cpu().saturating_sub(cpu0))
        }
    };
    // From /proc, as for the peer, so every reader's memory is read the same way.
    let (rss, hwm) = proc_rss(std::process::id())?;
    println!(
        "result kind=scrape label={} processes={processes} reported={reported} scrapes={scrapes} cpu_s={:.6} wall_s={:.6} rss_kib={rss} hwm_kib={hwm} root={}",
        label.as_deref().unwrap_or(name),
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        root.display()
    );
    Ok(())
}

/// One `GET` over HTTP/1.0 into `body`; the peer's answer must be `200`.
/// No `Accept-Encoding`: the peer is not asked to gzip, which spares it work
/// a Prometheus server would ask of it.
fn get(host: &str, path: &str, body: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    body.clear();
    stream.read_to_end(body)?;
    let status_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    if !status_line.windows(5).any(|w| w == b" 200 ") {
        return Err(err(format!(
            "GET http://{host}{path}: {}",
            String::from_utf8_lossy(status_line).trim()
        )));
    }
    Ok(())
}

/// process-exporter's groups in one answer: one `num_procs` line per group.
fn count_groups(body: &[u8]) -> usize {
    body.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"namedprocess_namegroup_num_procs{"))
        .count()
}

fn http(pid: u32, url: &str, scrapes: u32, label: &str) -> io::Result<()> {
    let url = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = match url.find('/') {
        Some(i) => url.split_at(i),
        None => (url, "/metrics"),
    };
    let processes = population(Path::new("/"))?;
    let mut body = Vec::with_capacity(4 << 20);
    // Warm-up, as for the in-process readers: the exporter builds its
    // per-process state on the first scrape.
    get(host, path, &mut body)?;
    let cpu0 = proc_cpu(pid)?;
    let t = Instant::now();
    for _ in 0..scrapes {
        get(host, path, &mut body)?;
    }
    let wall = t.elapsed();
    let cpu = proc_cpu(pid)?.saturating_sub(cpu0);
    let (rss, hwm) = proc_rss(pid)?;
    println!(
        "result kind=scrape label={label} processes={processes} reported={} scrapes={scrapes} cpu_s={:.6} wall_s={:.6} rss_kib={rss} hwm_kib={hwm} body_bytes={}",
        count_groups(&body),
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        body.len()
    );
    Ok(())
}

fn watch(pid: u32, seconds: u64, label: &str) -> io::Result<()> {
    let processes = population(Path::new("/"))?;
    let cpu0 = proc_cpu(pid)?;
    let t = Instant::now();
    let mut rss_max = 0;
    // Sampled every second: RSS between samples is covered by VmHWM.
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(proc_rss(pid)?.0);
    }
    let wall = t.elapsed();
    let cpu = proc_cpu(pid)?.saturating_sub(cpu0);
    let (rss, hwm) = proc_rss(pid)?;
    println!(
        "result kind=watch label={label} processes={processes} cpu_s={:.3} wall_s={:.3} rss_kib={rss} rss_max_kib={rss_max} hwm_kib={hwm}",
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
    Ok(())
}

/// One `result` line as its keys and values.
type Row = BTreeMap<String, String>;

fn num(row: &Row, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn report(file: &Path) -> io::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let rows: Vec<Row> = text
        .lines()
        .filter_map(|l| l.strip_prefix("result "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    let label = |r: &Row| r.get("label").cloned().unwrap_or_default();
    let per_scrape_ms = |r: &Row| num(r, "cpu_s") * 1e3 / num(r, "scrapes");
    let per_process_us = |r: &Row| num(r, "cpu_s") * 1e6 / num(r, "scrapes") / num(r, "processes");
    let mib = |kib: f64| kib / 1024.0;

    let mut out = String::new();
    let scrapes: Vec<&Row> = rows
        .iter()
        .filter(|r| r.get("kind").is_some_and(|k| k == "scrape"))
        .collect();
    if !scrapes.is_empty() {
        out.push_str(
            "| reader | processes | reported | scrapes | CPU per scrape | CPU per process | wall per scrape | RSS | peak RSS |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &scrapes {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} ms | {:.2} µs | {:.2} ms | {:.1} MiB | {:.1} MiB |\n",
                label(r),
                num(r, "processes"),
                num(r, "reported"),
                num(r, "scrapes"),
                per_scrape_ms(r),
                per_process_us(r),
                num(r, "wall_s") * 1e3 / num(r, "scrapes"),
                mib(num(r, "rss_kib")),
                mib(num(r, "hwm_kib")),
            ));
        }
        let find = |l: &str| scrapes.iter().find(|r| label(r) == l);
        if let (Some(p), Some(f)) = (find("phoenix"), find("floor")) {
            out.push_str(&format!(
                "\nphoenix / floor, CPU per process: {:.2}x (target <= 1.5x)\n",
                per_process_us(p) / per_process_us(f)
            ));
        }
        // Every process-exporter run (defaults, and its cheapest flags).
        let peers = scrapes
            .iter()
            .filter(|r| label(r).starts_with("process-exporter"));
        if let Some(p) = find("phoenix") {
            for x in peers {
                out.push_str(&format!(
                    "{} / phoenix, CPU per scrape: {:.1}x (target >= 10x); peak RSS {:.1}x\n",
                    label(x),
                    per_scrape_ms(x) / per_scrape_ms(p),
                    num(x, "hwm_kib") / num(p, "hwm_kib")
                ));
            }
        }
        // Cost against N: synthetic trees (labels `synth-<reader>`), per
        // process relative to the smallest N of the same reader; linear
        // growth keeps the ratio near 1.
        let mut synth: Vec<&&Row> = scrapes
            .iter()
            .filter(|r| label(r).starts_with("synth-"))
            .collect();
        synth.sort_by(|a, b| {
            label(a)
                .cmp(&label(b))
                .then(num(a, "processes").total_cmp(&num(b, "processes")))
        });
        if !synth.is_empty() {
            out.push_str("\ncost against N (synthetic /proc on tmpfs; per process relative to the smallest N):\n");
        }
        for r in &synth {
            let smallest = synth.iter().find(|s| label(s) == label(r)).unwrap_or(r);
            out.push_str(&format!(
                "  {}: {:.0} processes, {:.2} ms per scrape, {:.2} µs/process ({:.2}x)\n",
                label(r),
                num(r, "processes"),
                per_scrape_ms(r),
                per_process_us(r),
                per_process_us(r) / per_process_us(smallest)
            ));
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.get("kind").is_some_and(|k| k == "watch"))
    {
        let share = num(r, "cpu_s") / num(r, "wall_s") * 100.0;
        let hwm = mib(num(r, "hwm_kib"));
        out.push_str(&format!(
            "\n{} on {} processes for {:.0} s: CPU {:.3} s = {:.2}% of one core (target < 1%: {}); RSS {:.1} MiB, max sampled {:.1} MiB, peak (VmHWM) {:.1} MiB (target < 40 MiB: {})\n",
            label(r),
            num(r, "processes"),
            num(r, "wall_s"),
            num(r, "cpu_s"),
            share,
            if share < 1.0 { "met" } else { "NOT met" },
            mib(num(r, "rss_kib")),
            mib(num(r, "rss_max_kib")),
            hwm,
            if hwm < 40.0 { "met" } else { "NOT met" },
        ));
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_cpu_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so that there is something to read at tick resolution.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(own_cpu());
        }
        assert!(proc_cpu(pid).expect("own stat") > Duration::ZERO);
        let (rss, hwm) = proc_rss(pid).expect("own status");
        assert!(rss > 0 && hwm >= rss);
        assert!(population(Path::new("/")).expect("/proc") >= 2);
    }

    #[test]
    fn counts_process_exporter_groups_and_reports_ratios() {
        let body = b"HTTP/1.0 200 OK\r\n\r\n# TYPE namedprocess_namegroup_num_procs gauge\n\
            namedprocess_namegroup_num_procs{groupname=\"a-1\"} 1\n\
            namedprocess_namegroup_num_procs{groupname=\"b-2\"} 1\n\
            namedprocess_namegroup_cpu_seconds_total{groupname=\"a-1\",mode=\"user\"} 0\n";
        assert_eq!(count_groups(body), 2);

        let file = std::env::temp_dir().join(format!("peer-compare-test-{}", std::process::id()));
        std::fs::write(
            &file,
            "# machine: test\n\
             result kind=scrape label=floor processes=100 reported=100 scrapes=10 cpu_s=0.001 wall_s=0.001 rss_kib=1024 hwm_kib=1024\n\
             result kind=scrape label=phoenix processes=100 reported=90 scrapes=10 cpu_s=0.0012 wall_s=0.0012 rss_kib=2048 hwm_kib=2048\n\
             result kind=watch label=agent processes=100 cpu_s=0.3 wall_s=60 rss_kib=1024 rss_max_kib=1024 hwm_kib=1024\n",
        )
        .expect("write results");
        let outcome = report(&file);
        let _ = std::fs::remove_file(&file);
        outcome.expect("report");
    }
}
