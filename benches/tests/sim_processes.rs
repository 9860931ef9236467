//! The real `phoenix-sim` binary: its processes exist with the names,
//! thread counts, command lines and memory asked for (seen both in `/proc`
//! and in a Phoenix scrape), churn replaces them, and none survives the
//! simulator — stopped by a signal or killed outright.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_processors::{Number, Value};
use phoenix_telemetry::registry::Registry;

const SIM: &str = env!("CARGO_BIN_EXE_phoenix-sim");
/// Generous: a debug build on a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "phoenix-simtest-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running simulator, killed (and its children with it) if the test
/// fails before stopping it.
struct Sim {
    child: Child,
    dir: TempDir,
}

impl Sim {
    fn start(tag: &str, profile: &str, extra: &[&str]) -> Sim {
        let dir = TempDir::new(tag);
        let file = dir.0.join("profile.yaml");
        fs::write(&file, profile).expect("profile");
        let child = Command::new(SIM)
            .arg("--profile-file")
            .arg(&file)
            .arg("--work-dir")
            .arg(&dir.0)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start phoenix-sim");
        Sim { child, dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the simulator is
        // our unreaped child, so its PID cannot have been reused.
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(rc, 0, "signal the simulator");
    }

    /// Wait for the simulator to exit; its exit status and stdout.
    fn wait(&mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "phoenix-sim did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (status, out, err)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `/proc/PID` says about one process.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    state: char,
    starttime: u64,
    comm: String,
    exe: Option<PathBuf>,
    threads: u64,
    rss_bytes: u64,
    cmdline: Vec<u8>,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Some(Proc {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        state: fields.first()?.chars().next()?,
        starttime: fields.get(19)?.parse().ok()?,
        comm,
        exe: fs::read_link(dir.join("exe")).ok(),
        threads: kib("Threads:"),
        rss_bytes: kib("VmRSS:") * 1024,
        cmdline: fs::read(dir.join("cmdline")).unwrap_or_default(),
    })
}

/// The living children of `parent`.
fn children_of(parent: u32) -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .filter(|p| p.ppid == parent && p.state != 'Z')
        .collect()
}

/// Poll until `ready` holds for the simulator's children; returns them.
fn wait_for_children(sim: &mut Sim, ready: impl Fn(&[Proc]) -> bool) -> Vec<Proc> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let kids = children_of(sim.pid());
        if ready(&kids) {
            return kids;
        }
        if let Ok(Some(status)) = sim.child.try_wait() {
            let (_, out, err) = sim.wait();
            panic!("phoenix-sim exited early ({status}):\n{out}\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "children never got ready: {kids:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the process that was `p` is gone (exited, reaped or a zombie;
/// a different process with the same PID does not count as `p`).
fn is_gone(p: &Proc) -> bool {
    match read_proc(p.pid) {
        None => true,
        Some(now) => now.starttime != p.starttime || now.state == 'Z',
    }
}

fn assert_all_gone(kids: &[Proc]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let alive: Vec<&Proc> = kids.iter().filter(|p| !is_gone(p)).collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children outlived the simulator: {alive:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exe_name(p: &Proc) -> Option<String> {
    p.exe.as_ref()?.file_name()?.to_str().map(|s| s.to_string())
}

fn summary(stdout: &str) -> serde_norway::Value {
    serde_norway::from_str(stdout).unwrap_or_else(|e| panic!("summary is YAML ({e}):\n{stdout}"))
}

fn count(v: &serde_norway::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no {key}: {v:?}"))
}

const PROFILE: &str = "\
name: test
groups:
  - name: phx-test-db
    count: 5
    threads: 1
    memory_mib: 8
  - name: phx-test-worker
    count: 2
    threads: 4
    cpu_percent: 5
    args: [--queue, default]
";

#[test]
fn simulated_processes_have_the_names_threads_and_memory_asked_for() {
    let mut sim = Sim::start("names", PROFILE, &[]);
    let kids = wait_for_children(&mut sim, |kids| {
        let db = kids
            .iter()
            .filter(|p| p.comm == "phx-test-db" && p.rss_bytes >= 8 * MIB)
            .count();
        let workers = kids
            .iter()
            .filter(|p| p.comm == "phx-test-worker" && p.threads == 4)
            .count();
        db == 5 && workers == 2
    });
    assert_eq!(kids.len(), 7, "{kids:#?}");
    for p in &kids {
        assert_eq!(exe_name(p).as_deref(), Some(p.comm.as_str()), "{p:#?}");
        let exe = p.exe.as_ref().expect("exe");
        assert!(
            exe.starts_with(&sim.dir.0),
            "exe in the private directory: {exe:?}"
        );
        match p.comm.as_str() {
            "phx-test-db" => {
                assert_eq!(p.threads, 1);
                assert_eq!(p.cmdline, b"phx-test-db\0");
            }
            "phx-test-worker" => {
                assert_eq!(p.threads, 4);
                assert_eq!(p.cmdline, b"phx-test-worker\0--queue\0default\0");
            }
            other => panic!("unexpected child {other}"),
        }
    }

    // The same processes in a Phoenix scrape of the real /proc.
    let mut config = ProcfsConfig {
        host_name: Some("test".into()),
        ..ProcfsConfig::default()
    };
    config
        .metrics
        .insert("process.thread.count".into(), Toggle { enabled: true });
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");
    let batch = receiver.scrape();
    let sim_pid = Value::Int(i64::from(sim.pid()));
    let ours: Vec<_> = batch
        .resources
        .iter()
        .filter(|r| r.attributes.get("process.parent_pid") == Some(&sim_pid))
        .collect();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &ours {
        let name = r
            .attributes
            .get_str("process.executable.name")
            .expect("executable name");
        *names.entry(name).or_default() += 1;
        let metric = |m: &str| match r.metric(m).map(|m| m.points[0].value) {
            Some(Number::Int(v)) => v,
            other => panic!("{name} {m}: {other:?}"),
        };
        match name {
            "phx-test-db" => {
                assert_eq!(metric("process.thread.count"), 1);
                assert!(metric("process.memory.usage") >= (8 * MIB) as i64);
                assert_eq!(
                    r.attributes.get_str("process.command_line"),
                    Some("phx-test-db")
                );
            }
            "phx-test-worker" => {
                assert_eq!(metric("process.thread.count"), 4);
                assert_eq!(
                    r.attributes.get_str("process.command_line"),
                    Some("phx-test-worker --queue default")
                );
            }
            other => panic!("unexpected process {other}"),
        }
    }
    assert_eq!(
        names,
        BTreeMap::from([("phx-test-db", 5), ("phx-test-worker", 2)])
    );

    // SIGTERM: every child killed and reaped, a summary, exit 0.
    sim.signal(libc::SIGTERM);
    let (status, out, err) = sim.wait();
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert_all_gone(&kids);
    let s = summary(&out);
    assert_eq!(s["profile"].as_str(), Some("test"));
    assert_eq!(s["stopped_by"].as_str(), Some("SIGTERM"));
    assert_eq!(count(&s, "running_at_stop"), 7, "{out}");
    assert_eq!(count(&s, "peak_running"), 7, "{out}");
    assert_eq!(
        count(&s, "spawned"),
        count(&s, "exited") + count(&s, "running_at_stop"),
        "every process accounted for: {out}"
    );
    assert_eq!(count(&s, "failed"), 0, "{out}\n{err}");
    assert_eq!(count(&s, "not_reaped"), 0, "{out}");
    assert!(
        !sim.dir
            .0
            .join(format!("phoenix-sim-{}", sim.pid()))
            .exists(),
        "the executables' directory is removed"
    );
}

#[test]
fn children_die_with_a_killed_simulator() {
    let profile = "groups:\n  - name: phx-test-orphan\n    count: 4\n    threads: 2\n";
    let mut sim = Sim::start("kill9", profile, &["--quiet"]);
    let kids = wait_for_children(&mut sim, |kids| kids.len() == 4);
    assert!(kids.iter().all(|p| p.comm == "phx-test-orphan"));
    // No chance to clean up: the parent-death signal must do it.
    sim.signal(libc::SIGKILL);
    let (status, _, _) = sim.wait();
    assert_eq!(status.code(), None, "killed by a signal");
    assert_all_gone(&kids);
}

#[test]
fn churn_replaces_the_oldest_processes_until_the_duration_ends() {
    let profile = "\
groups:
  - name: phx-test-churn
    count: 3
    churn_per_second: 5
  - name: phx-test-steady
    count: 1
";
    let mut sim = Sim::start("churn", profile, &["--duration", "4s", "--quiet"]);
    let first = wait_for_children(&mut sim, |kids| kids.len() == 4);
    // Churn stops the oldest processes with SIGTERM and starts new ones:
    // every one of the first churners goes, the steady process stays.
    let churners: Vec<Proc> = first
        .iter()
        .filter(|p| p.comm == "phx-test-churn")
        .cloned()
        .collect();
    let steady: Vec<Proc> = first
        .iter()
        .filter(|p| p.comm == "phx-test-steady")
        .cloned()
        .collect();
    assert_eq!((churners.len(), steady.len()), (3, 1));
    assert_all_gone(&churners);
    assert!(steady.iter().all(|p| !is_gone(p)), "steady process kept");
    let (status, out, err) = sim.wait();
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    let s = summary(&out);
    assert_eq!(s["stopped_by"].as_str(), Some("duration"));
    assert!(count(&s, "exited") >= 3, "{out}");
    assert_eq!(count(&s, "running_at_stop"), 4, "{out}");
    assert_eq!(
        count(&s, "spawned"),
        count(&s, "exited") + count(&s, "running_at_stop"),
        "{out}"
    );
    assert_eq!(count(&s, "failed"), 0, "{out}\n{err}");
    assert_all_gone(&steady);
}

#[test]
fn processes_with_a_lifetime_exit_by_themselves_and_are_respawned() {
    let profile = "\
groups:
  - name: phx-test-short
    count: 2
    lifetime: 300ms
  - name: phx-test-once
    count: 1
    lifetime: 300ms
    respawn: false
";
    let mut sim = Sim::start("lifetime", profile, &["--quiet"]);
    let first = wait_for_children(&mut sim, |kids| {
        kids.iter().filter(|p| p.comm == "phx-test-short").count() == 2
    });
    assert_all_gone(&first);
    // Replaced (respawn is the default), except the group that asked not to be.
    let second = wait_for_children(&mut sim, |kids| {
        kids.iter().filter(|p| p.comm == "phx-test-short").count() == 2
            && kids.iter().all(|p| p.comm != "phx-test-once")
            && kids.iter().all(|k| first.iter().all(|f| f.pid != k.pid))
    });
    sim.signal(libc::SIGINT);
    let (status, out, err) = sim.wait();
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    let s = summary(&out);
    assert_eq!(s["stopped_by"].as_str(), Some("SIGINT"));
    assert!(count(&s, "exited") >= 3, "{out}");
    assert_eq!(
        count(&s, "failed"),
        0,
        "a lifetime's end is a clean exit: {out}"
    );
    assert_all_gone(&second);
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(SIM)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run phoenix-sim");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gets_a_clear_message_and_a_meaningful_exit_code() {
    let dir = TempDir::new("badinput");
    let bad = dir.0.join("bad.yaml");
    fs::write(&bad, "groups:\n  - name: db\n    count: 1\n    cpu: 5\n").expect("bad profile");
    let bad = bad.to_str().expect("utf-8 path");

    let (code, _, err) = run(&["--profile-file", bad]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(&format!("{bad}: line 4, column 5:")), "{err}");
    assert!(err.contains("unknown field `cpu`"), "{err}");

    let (code, _, err) = run(&["--profile-file", "/nonexistent/phoenix/profile.yaml"]);
    assert_eq!(code, Some(3), "{err}");

    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(2), "nothing to run is a usage error: {err}");
    assert!(err.contains("--profile"), "{err}");
    assert_eq!(run(&["--no-such-flag"]).0, Some(2));
    assert_eq!(run(&["--profile", "nope"]).0, Some(2));
    assert_eq!(
        run(&["synth", "--out", "/tmp/x", "--processes", "0"]).0,
        Some(2)
    );

    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for needle in [
        "Profile YAML",
        "churn_per_second",
        "Exit codes",
        "PR_SET_PDEATHSIG",
    ] {
        assert!(out.contains(needle), "--help explains {needle}:\n{out}");
    }

    // A profile the machine cannot hold is refused before anything starts.
    let huge = dir.0.join("huge.yaml");
    fs::write(
        &huge,
        "groups:\n  - name: big\n    count: 50\n    memory_mib: 60000\n",
    )
    .expect("huge profile");
    let (code, _, err) = run(&["--profile-file", huge.to_str().expect("path"), "--dry-run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("MiB of memory"), "{err}");

    // Built-in profiles print as YAML that reads back as a valid profile.
    for name in ["realistic", "high-cardinality", "high-churn"] {
        let (code, out, err) = run(&["profile", name]);
        assert_eq!(code, Some(0), "{err}");
        let p = phoenix_benches::sim::profile::parse(&out).expect("printed profile parses");
        assert_eq!(p.name, name);
        let (code, out, _) = run(&["--profile", name, "--dry-run"]);
        assert_eq!(code, Some(0));
        assert!(out.starts_with(&format!("profile {name}: ")), "{out}");
    }
}
