//! The procfs receiver against the real kernel: a child process with known
//! behaviour (3 extra threads, 64 MiB touched, measured CPU bursts) is
//! scraped from `/proc`, and what the receiver reports is checked against
//! independent sources: the child's own `getrusage`, `ps` (procps, which
//! reads `/proc/PID/status` for RSS), `std::fs::read_dir` of its fd table,
//! and the wall clock at spawn time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_processors::{Batch, Number, Resource, Value};
use phoenix_telemetry::registry::Registry;
use phoenix_tests::tools::{missing_tool, on_path};

/// Threads: 3 parked on an Event. Memory: 64 MiB written page by page, so
/// all of it is resident. CPU: 0.5 s of busy loop before "ready", another
/// 0.5 s after a line on stdin, each followed by the child's own getrusage.
const CHILD: &str = r#"
import os, resource, sys, threading, time

def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

parked = threading.Event()
for _ in range(3):
    threading.Thread(target=parked.wait, daemon=True).start()
memory = bytearray(64 << 20)
for i in range(0, len(memory), 4096):
    memory[i] = 1
burn(0.5)
print("ready", cpu(), os.path.realpath(sys.executable), flush=True)
sys.stdin.readline()
burn(0.5)
print("burnt", cpu(), flush=True)
time.sleep(600)
"#;

/// Kills and reaps the child however the test ends.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl ChildGuard {
    fn spawn(python: &str) -> ChildGuard {
        let mut child = Command::new(python)
            .args(["-c", CHILD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        // A reader thread, so that a wedged child fails the test by timeout
        // instead of hanging it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildGuard {
            child,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    /// The next line the child prints, split on spaces.
    fn line(&self, expected_tag: &str) -> Vec<String> {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("child did not print {expected_tag:?}: {e}"));
        let fields: Vec<String> = line.split(' ').map(str::to_string).collect();
        assert_eq!(fields[0], expected_tag, "{line}");
        fields
    }

    fn poke(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write to child");
        stdin.flush().expect("flush");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real interpreter behind `python3` (pyenv and the like put a shell
/// script there), so that the child's PID is the interpreter's.
fn real_python() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .expect("python3 is needed for the accuracy test");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8 path")
        .trim()
        .to_string()
}

struct Ps {
    rss_kib: i64,
    nlwp: i64,
    ppid: i64,
    comm: String,
    cputime_s: f64,
    min_flt: i64,
}

fn ps(pid: i64) -> Ps {
    let out = Command::new("ps")
        .args([
            "-o",
            "rss=,nlwp=,ppid=,cputimes=,min_flt=,comm=",
            "-p",
            &pid.to_string(),
        ])
        .output()
        .expect("runs ps");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = text.split_whitespace().collect();
    assert!(f.len() >= 6, "ps output: {text:?}");
    let num = |i: usize| {
        f[i].parse::<i64>()
            .unwrap_or_else(|_| panic!("ps field {i}: {text}"))
    };
    Ps {
        rss_kib: num(0),
        nlwp: num(1),
        ppid: num(2),
        cputime_s: num(3) as f64,
        min_flt: num(4),
        comm: f[5..].join(" "),
    }
}

fn find(batch: &Batch, pid: i64) -> &Resource {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&Value::Int(pid)))
        .unwrap_or_else(|| panic!("pid {pid} not in the scrape"))
}

fn value(r: &Resource, metric: &str, attr: Option<(&str, &str)>) -> f64 {
    let m = r
        .metric(metric)
        .unwrap_or_else(|| panic!("{metric} missing"));
    let p = m
        .points
        .iter()
        .find(|p| attr.is_none_or(|(k, v)| p.attributes.get_str(k) == Some(v)))
        .unwrap_or_else(|| panic!("{metric} {attr:?} missing"));
    match p.value {
        Number::Int(v) => v as f64,
        Number::Double(v) => v,
    }
}

fn cpu_total(r: &Resource, metric: &str) -> f64 {
    value(r, metric, Some(("cpu.mode", "user"))) + value(r, metric, Some(("cpu.mode", "system")))
}

fn unix_nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// /proc/PID/stat's utime and stime are each truncated to a clock tick
/// (10 ms at 100 Hz) while getrusage has microseconds: a total may differ by
/// two ticks. The child also spends a little CPU between its getrusage and
/// the scrape (printing, blocking on stdin or in sleep): allow 20 ms more.
const CPU_TOLERANCE_S: f64 = 0.04;

#[test]
fn receiver_matches_the_kernel_for_a_known_child() {
    if !on_path("ps") {
        missing_tool("ps", "apt-get install procps");
        return;
    }
    let python = real_python();
    let spawned_at = unix_nanos_now();
    let mut child = ChildGuard::spawn(&python);
    let ready = child.line("ready");
    let cpu_ready: f64 = ready[1].parse().expect("cpu seconds");
    let exe_path = ready[2..].join(" ");

    let mut config = ProcfsConfig::default();
    for m in [
        "process.cpu.utilization",
        "process.thread.count",
        "process.unix.file_descriptor.count",
        "process.paging.faults",
        "process.context_switches",
        "process.uptime",
    ] {
        config.metrics.insert(m.into(), Toggle { enabled: true });
    }
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver on /proc");

    let t0 = Instant::now();
    let first = receiver.scrape();
    let t1 = Instant::now();
    let fds_now = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
        .expect("child fd dir")
        .count() as f64;
    let ps_now = ps(child.pid());
    let r = find(&first, child.pid());

    // CPU: the child's own getrusage after its 0.5 s burst.
    let cpu = cpu_total(r, "process.cpu.time");
    assert!(cpu_ready >= 0.5, "the child burnt {cpu_ready} s");
    assert!(
        (cpu - cpu_ready).abs() <= CPU_TOLERANCE_S,
        "receiver {cpu} s vs getrusage {cpu_ready} s"
    );
    assert!(
        (cpu - ps_now.cputime_s).abs() <= 1.0,
        "ps cputimes has whole seconds"
    );

    // Memory: the child sleeps, so RSS is what ps reads from another file a
    // moment later; allow one huge page for the kernel's own page moves.
    let rss = value(r, "process.memory.usage", None);
    let ps_rss = ps_now.rss_kib as f64 * 1024.0;
    assert!(
        (rss - ps_rss).abs() <= 2.0 * 1024.0 * 1024.0,
        "receiver {rss} B vs ps {ps_rss} B"
    );
    assert!(rss >= 64.0 * 1024.0 * 1024.0, "64 MiB were touched: {rss}");
    assert!(
        rss < 200.0 * 1024.0 * 1024.0,
        "an interpreter plus 64 MiB: {rss}"
    );
    assert!(value(r, "process.memory.virtual", None) >= rss);

    // Threads, parent, faults, fds: exact (the child is idle).
    assert_eq!(value(r, "process.thread.count", None), 4.0, "main + 3");
    assert_eq!(ps_now.nlwp, 4);
    assert_eq!(
        r.attributes.get("process.parent_pid"),
        Some(&Value::Int(i64::from(std::process::id())))
    );
    assert_eq!(ps_now.ppid, i64::from(std::process::id()));
    let minor = value(
        r,
        "process.paging.faults",
        Some(("system.paging.fault.type", "minor")),
    );
    assert!(
        (minor - ps_now.min_flt as f64).abs() <= 16.0,
        "receiver {minor} vs ps {}",
        ps_now.min_flt
    );
    // read_dir's own descriptor is open in *our* process, not the child's.
    assert_eq!(
        value(r, "process.unix.file_descriptor.count", None),
        fds_now
    );
    assert!(
        value(
            r,
            "process.context_switches",
            Some(("process.context_switch.type", "voluntary"))
        ) > 0.0
    );

    // Identity.
    let a = &r.attributes;
    assert_eq!(
        a.get_str("process.executable.path"),
        Some(exe_path.as_str())
    );
    let base = exe_path.rsplit('/').next().expect("basename");
    assert_eq!(a.get_str("process.executable.name"), Some(base));
    // comm is the exec'd file's basename, cut to 15 bytes.
    assert!(
        base.starts_with(&ps_now.comm),
        "{base} vs ps comm {}",
        ps_now.comm
    );
    assert_eq!(a.get_str("process.command"), Some(python.as_str()));
    let cmdline = a.get_str("process.command_line").expect("command line");
    assert!(cmdline.starts_with(&format!("{python} -c ")), "{cmdline}");
    assert!(cmdline.contains("parked.wait"));
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let owner = a.get_str("process.owner").expect("owner");
    assert!(owner == "root" || uid != 0, "uid 0 is root: {owner}");

    // Creation time: within the whole second btime is truncated to (plus a
    // tick) of when we spawned it.
    let created = r
        .metric("process.cpu.time")
        .map(|m| m.points[0].start_time_unix_nano)
        .expect("cpu.time");
    let slack = 1_100_000_000;
    assert!(
        created + slack >= spawned_at && created <= unix_nanos_now() + slack,
        "created {created}, spawned {spawned_at}"
    );
    assert!(
        r.metric("process.cpu.utilization").is_none(),
        "first scrape"
    );

    // Utilization: a second 0.5 s burst between two scrapes.
    child.poke();
    let burnt = child.line("burnt");
    let cpu_burnt: f64 = burnt[1].parse().expect("cpu seconds");
    let t2 = Instant::now();
    let second = receiver.scrape();
    let t3 = Instant::now();
    let r = find(&second, child.pid());
    let util = cpu_total(r, "process.cpu.utilization");
    let ncpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count_cpus(s.trim()))
        .expect("online cpus");
    let burst = cpu_burnt - cpu_ready;
    let (shortest, longest) = ((t2 - t1).as_secs_f64(), (t3 - t0).as_secs_f64());
    let lo = (burst - CPU_TOLERANCE_S) / (longest * ncpus);
    let hi = (burst + CPU_TOLERANCE_S) / (shortest * ncpus);
    assert!(
        lo <= util && util <= hi,
        "utilization {util} not in [{lo}, {hi}] for a {burst} s burst on {ncpus} CPUs"
    );
    assert!(
        (cpu_total(r, "process.cpu.time") - cpu_burnt).abs() <= CPU_TOLERANCE_S,
        "after the second burst"
    );
}

/// The number of CPUs in a list like `0-3,5,7-8`.
fn count_cpus(list: &str) -> Option<f64> {
    let mut n = 0.0;
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => n += (b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1) as f64,
            None => {
                part.parse::<u32>().ok()?;
                n += 1.0;
            }
        }
    }
    Some(n)
}
