//! The procfs receiver against the real kernel: a child process with known
//! behaviour (3 extra threads, 64 MiB touched, measured CPU bursts) is
//! scraped from `/proc`, and what the receiver reports is checked against
//! independent sources: the child's own `getrusage`, `ps` (procps, which
//! reads `/proc/PID/status` for RSS), `std::fs::read_dir` of its fd table,
//! and the wall clock at spawn time. A second child checks the optional
//! metrics against `psutil`, `ps` and `vmstat`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_config::receiver::procfs::METRICS;
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
    fn spawn(python: &str, script: &str) -> ChildGuard {
        let mut child = Command::new(python)
            .args(["-c", script])
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
    let mut child = ChildGuard::spawn(&python, CHILD);
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

// The optional metrics against independent readers: a child with known
// state (7 extra descriptors, a soft descriptor limit of 200, two blocked
// signals pending, 32 MiB of private memory, 1,000 reads and 500 writes, a
// zombie child and a stopped one) is scraped, and each metric is compared
// with what `psutil` and `ps`/`vmstat` (procps) say.

/// Forks first (a child sharing the 32 MiB copy-on-write would make them
/// shared, not unique), sets up the state, prints `ready <zombie pid> <stopped pid>`, then
/// blocks on stdin without touching anything the test measures.
const OPTIONAL_CHILD: &str = r#"
import os, resource, signal, sys

# The children first: pages touched after the fork stay private.
zombie = os.fork()
if zombie == 0:
    os._exit(0)
stopped = os.fork()
if stopped == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
os.waitid(os.P_PID, zombie, os.WEXITED | os.WNOWAIT)
os.waitid(os.P_PID, stopped, os.WSTOPPED | os.WNOWAIT)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
files = [open("/dev/null") for _ in range(7)]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
os.kill(os.getpid(), signal.SIGUSR1)
os.kill(os.getpid(), signal.SIGUSR2)
os.kill(os.getpid(), signal.SIGUSR1)  # one bit per signal: still 2
memory = bytearray(32 << 20)
for i in range(0, len(memory), 4096):
    memory[i] = 1
zero = os.open("/dev/zero", os.O_RDONLY)
null = os.open("/dev/null", os.O_WRONLY)
for _ in range(1000):
    os.read(zero, 1)
for _ in range(500):
    os.write(null, b"x")
print("ready", zombie, stopped, flush=True)
sys.stdin.readline()
os.kill(stopped, signal.SIGKILL)
"#;

/// psutil's view of one process, as `key value` lines.
const PSUTIL: &str = r#"
import sys, psutil
p = psutil.Process(int(sys.argv[1]))
m = p.memory_full_info()
io = p.io_counters()
print("uss", m.uss)
print("pss", m.pss)
print("swap", m.swap)
print("fds", p.num_fds())
print("nofile", p.rlimit(psutil.RLIMIT_NOFILE)[0])
print("read_count", io.read_count)
print("write_count", io.write_count)
print("iowait", p.cpu_times().iowait)
print("memory_percent", p.memory_percent())
print("status", p.status())
"#;

/// The child's own children, killed however the test ends (the stopped
/// one would otherwise outlive it).
struct KillOnDrop(Vec<i64>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) has no memory effects; a reaped pid is an error at worst.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn psutil(pid: i64) -> BTreeMap<String, String> {
    let out = Command::new("python3")
        .args(["-c", PSUTIL, &pid.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "psutil: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn has_psutil() -> bool {
    Command::new("python3")
        .args(["-c", "import psutil"])
        .status()
        .is_ok_and(|s| s.success())
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(out.status.success(), "{program} {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn everything_on() -> ProcfsConfig {
    let mut config = ProcfsConfig {
        cpu_wait: Some(true),
        ..ProcfsConfig::default()
    };
    for m in METRICS {
        config
            .metrics
            .insert(m.name.into(), Toggle { enabled: true });
    }
    config
}

fn forks_since_boot() -> f64 {
    let text = command_output("vmstat", &["-f"]);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("vmstat -f: {text}"))
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn optional_metrics_match_psutil_and_procps() {
    for (tool, install) in [
        ("ps", "apt-get install procps"),
        ("vmstat", "apt-get install procps"),
    ] {
        if !on_path(tool) {
            missing_tool(tool, install);
            return;
        }
    }
    if !has_psutil() {
        missing_tool("psutil", "python3 -m pip install psutil");
        return;
    }
    let child = ChildGuard::spawn(&real_python(), OPTIONAL_CHILD);
    let ready = child.line("ready");
    let pids: Vec<i64> = ready[1..].iter().map(|p| p.parse().expect("pid")).collect();
    let _grandchildren = KillOnDrop(pids.clone());
    let (zombie, stopped) = (pids[0], pids[1]);

    let mut receiver =
        ProcfsReceiver::new(&everything_on(), &Registry::new()).expect("receiver on /proc");
    let forks_before = forks_since_boot();
    let batch = receiver.scrape();
    let forks_after = forks_since_boot();
    let ps_states = command_output("ps", &["-e", "-o", "stat="]);
    let py = psutil(child.pid());
    let num = |k: &str| -> f64 { py[k].parse().unwrap_or_else(|_| panic!("psutil {k}")) };
    let r = find(&batch, child.pid());

    // Descriptors: psutil counts the fd directory; the soft limit.
    assert_eq!(
        value(r, "process.unix.file_descriptor.count", None),
        num("fds")
    );
    assert_eq!(value(r, "process.unix.file_descriptor.limit", None), 200.0);
    assert_eq!(num("nofile"), 200.0);

    // Signals: SIGUSR1 and SIGUSR2, blocked and pending; ps's process-wide mask agrees.
    assert_eq!(value(r, "process.signals_pending", None), 2.0);
    let mask = command_output("ps", &["-o", "pending=", "-p", &child.pid().to_string()]);
    let mask = u64::from_str_radix(mask.trim(), 16).expect("hex mask");
    assert_eq!(mask.count_ones(), 2, "ps pending {mask:x}");

    // Read and write calls: the child is idle in a read that has not returned.
    let reads = value(
        r,
        "process.disk.operations",
        Some(("disk.io.direction", "read")),
    );
    let writes = value(
        r,
        "process.disk.operations",
        Some(("disk.io.direction", "write")),
    );
    assert_eq!(reads, num("read_count"));
    assert_eq!(writes, num("write_count"));
    assert!(
        reads >= 1000.0 && writes >= 500.0,
        "{reads} reads, {writes} writes"
    );

    // Memory from smaps_rollup. psutil's own interpreter maps the same
    // libraries while it reads, which moves shared pages between PSS and
    // USS of the child: allow a few MiB. The 32 MiB are private either way.
    let (uss, pss) = (
        value(r, "process.memory.uss", None),
        value(r, "process.memory.pss", None),
    );
    assert!(
        (uss - num("uss")).abs() <= 4.0 * MIB,
        "uss {uss} vs {}",
        num("uss")
    );
    assert!(
        (pss - num("pss")).abs() <= 4.0 * MIB,
        "pss {pss} vs {}",
        num("pss")
    );
    assert!(uss >= 32.0 * MIB && pss >= uss, "uss {uss}, pss {pss}");
    assert_eq!(value(r, "process.memory.swap", None), num("swap"));

    // Utilization: RSS over MemTotal, as a share (psutil says percent).
    let util = value(r, "process.memory.utilization", None);
    assert!(
        (util * 100.0 - num("memory_percent")).abs() <= 0.05,
        "{util} vs {}%",
        num("memory_percent")
    );

    // Block I/O wait: the same field psutil reads, in seconds.
    let wait = value(r, "process.cpu.time", Some(("cpu.mode", "wait")));
    assert!(
        (wait - num("iowait")).abs() <= 0.011,
        "{wait} vs {}",
        num("iowait")
    );
    assert_eq!(py["status"], "sleeping");

    // Host counts: the zombie and the stopped child, and the totals of
    // `ps -e` (a shared machine: other processes come and go meanwhile).
    let host = batch
        .resources
        .iter()
        .find(|r| r.identity.is_none())
        .expect("the host resource");
    assert!(host.attributes.is_empty());
    assert_eq!(
        receiver.last_scrape().processes,
        batch.resources.len() - 1,
        "the host's resource is no process"
    );
    let count = |state: &str| value(host, "system.process.count", Some(("process.state", state)));
    let ps_count = |letters: &str| {
        ps_states
            .lines()
            .filter(|l| l.trim().chars().next().is_some_and(|c| letters.contains(c)))
            .count() as f64
    };
    assert!(count("defunct") >= 1.0, "the zombie {zombie}");
    assert!(count("stopped") >= 1.0, "the stopped child {stopped}");
    assert!((count("defunct") - ps_count("ZX")).abs() <= 2.0);
    assert!((count("stopped") - ps_count("Tt")).abs() <= 2.0);
    let total: f64 = host.metrics[0]
        .points
        .iter()
        .map(|p| match p.value {
            Number::Int(v) => v as f64,
            Number::Double(v) => v,
        })
        .sum();
    let ps_total = ps_states.lines().count() as f64;
    assert!(
        (total - ps_total).abs() <= (ps_total * 0.1).max(10.0),
        "{total} processes counted, ps -e lists {ps_total}"
    );
    let created = value(host, "system.process.created", None);
    assert!(
        forks_before <= created && created <= forks_after,
        "{forks_before} <= {created} <= {forks_after}"
    );
}
