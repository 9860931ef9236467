//! The synthetic `/proc` read by the real procfs receiver: every value the
//! generator wrote comes back out of a scrape, and what `advance()` changes
//! (exits, births, PID reuse, re-parenting, growing counters) is what the
//! receiver sees on the next scrape.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_benches::synthetic::{MARKER, SynthConfig, SynthProcess, SyntheticTree};
use phoenix_processors::{Batch, Number, Resource, Value};
use phoenix_telemetry::registry::Registry;

/// A directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // tmpfs when there is one: a tree is thousands of small files, which
        // a disk-backed /tmp can make a hundred times slower to write.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        TempDir(base.join(format!(
            "phoenix-synth-{tag}-{}-{nanos}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ncpus() -> f64 {
    phoenix_telemetry::sys::sysconf(libc::_SC_NPROCESSORS_ONLN).unwrap_or(1) as f64
}

/// Every metric the receiver has and the raw cgroup line, so that every
/// file is checked.
fn receiver_for(root: &Path) -> ProcfsReceiver {
    let mut config = ProcfsConfig {
        root_path: root.to_path_buf(),
        host_name: Some("synthetic-node".into()),
        ..ProcfsConfig::default()
    };
    for name in [
        "process.cpu.utilization",
        "process.thread.count",
        "process.unix.file_descriptor.count",
        "process.context_switches",
        "process.paging.faults",
        "process.uptime",
    ] {
        config
            .metrics
            .insert(name.to_string(), Toggle { enabled: true });
    }
    config
        .resource_attributes
        .insert("process.linux.cgroup".into(), Toggle { enabled: true });
    ProcfsReceiver::new(&config, &Registry::new()).expect("receiver over the synthetic root")
}

fn pid_of(r: &Resource) -> u32 {
    match r.attributes.get("process.pid") {
        Some(Value::Int(p)) => u32::try_from(*p).expect("pid fits u32"),
        other => panic!("no process.pid: {other:?}"),
    }
}

fn by_pid(batch: &Batch) -> HashMap<u32, &Resource> {
    batch.resources.iter().map(|r| (pid_of(r), r)).collect()
}

fn point(r: &Resource, metric: &str, attr: Option<(&str, &str)>) -> Option<(Number, u64)> {
    r.metric(metric)?
        .points
        .iter()
        .find(|p| match attr {
            Some((k, v)) => p.attributes.get_str(k) == Some(v),
            None => p.attributes.is_empty(),
        })
        .map(|p| (p.value, p.start_time_unix_nano))
}

fn int(r: &Resource, metric: &str, attr: Option<(&str, &str)>) -> i64 {
    match point(r, metric, attr) {
        Some((Number::Int(v), _)) => v,
        other => panic!("{metric} {attr:?}: expected an int point, got {other:?}"),
    }
}

fn double(r: &Resource, metric: &str, attr: Option<(&str, &str)>) -> f64 {
    match point(r, metric, attr) {
        Some((Number::Double(v), _)) => v,
        other => panic!("{metric} {attr:?}: expected a double point, got {other:?}"),
    }
}

/// uid → name from the tree's own passwd file, read independently of the
/// receiver's parser.
fn passwd(root: &Path) -> HashMap<u32, String> {
    fs::read_to_string(root.join("etc/passwd"))
        .expect("passwd")
        .lines()
        .filter_map(|l| {
            let mut cols = l.split(':');
            let name = cols.next()?.to_string();
            let uid = cols.nth(1)?.parse().ok()?;
            Some((uid, name))
        })
        .collect()
}

/// Assert that the receiver reported `p` exactly as the generator wrote it.
fn assert_matches(
    r: &Resource,
    p: &SynthProcess,
    tree: &SyntheticTree,
    users: &HashMap<u32, String>,
) {
    let hz = tree.clock_ticks() as f64;
    let ctx = format!("pid {} ({})", p.pid, p.comm);
    let a = &r.attributes;
    assert_eq!(
        a.get("process.parent_pid"),
        Some(&Value::Int(i64::from(p.ppid))),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("process.executable.name"),
        Some(p.executable_name()),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("process.executable.path"),
        p.exe.as_deref(),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("process.command"),
        p.command().as_deref(),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("process.command_line"),
        p.command_line().as_deref(),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("process.owner"),
        users.get(&p.uid).map(String::as_str),
        "{ctx}"
    );
    let container = p.container();
    let c = container.as_ref();
    assert_eq!(a.get_str("container.id"), c.map(|c| c.id.as_str()), "{ctx}");
    assert_eq!(
        a.get_str("container.runtime.name"),
        c.and_then(|c| c.runtime),
        "{ctx}"
    );
    assert_eq!(
        a.get_str("k8s.pod.uid"),
        c.and_then(|c| c.pod_uid.as_deref()),
        "{ctx}"
    );
    assert!(a.get("process.linux.cgroup").is_some(), "{ctx}");

    let creation = tree.boot_time() * 1_000_000_000
        + u64::try_from(u128::from(p.starttime) * 1_000_000_000 / u128::from(tree.clock_ticks()))
            .expect("fits");
    let (user, start) = point(r, "process.cpu.time", Some(("cpu.mode", "user"))).expect("cpu time");
    assert_eq!(
        start, creation,
        "{ctx}: counters start at the creation time"
    );
    let Number::Double(user) = user else {
        panic!("{ctx}: cpu time is a double")
    };
    assert!(
        (user - p.utime as f64 / hz).abs() < 1e-6,
        "{ctx}: user {user} vs {}",
        p.utime
    );
    let system = double(r, "process.cpu.time", Some(("cpu.mode", "system")));
    assert!(
        (system - p.stime as f64 / hz).abs() < 1e-6,
        "{ctx}: system {system}"
    );
    assert_eq!(
        int(r, "process.memory.usage", None),
        i64::try_from(p.rss_bytes(tree.page_size())).expect("fits"),
        "{ctx}"
    );
    assert_eq!(
        int(r, "process.memory.virtual", None),
        p.vsize as i64,
        "{ctx}"
    );
    let io = |dir| int(r, "process.disk.io", Some(("disk.io.direction", dir)));
    assert_eq!(
        io("read"),
        p.read_bytes as i64,
        "{ctx}: read_bytes, not rchar"
    );
    assert_eq!(io("write"), p.write_bytes as i64, "{ctx}");
    assert_eq!(
        int(r, "process.thread.count", None),
        p.num_threads as i64,
        "{ctx}"
    );
    assert_eq!(
        int(r, "process.unix.file_descriptor.count", None),
        i64::from(p.fds),
        "{ctx}: fd/ entries"
    );
    let cs = |t| {
        int(
            r,
            "process.context_switches",
            Some(("process.context_switch.type", t)),
        )
    };
    assert_eq!(cs("voluntary"), p.voluntary_ctxt_switches as i64, "{ctx}");
    assert_eq!(
        cs("involuntary"),
        p.nonvoluntary_ctxt_switches as i64,
        "{ctx}"
    );
    let faults = |t| {
        int(
            r,
            "process.paging.faults",
            Some(("system.paging.fault.type", t)),
        )
    };
    assert_eq!(faults("minor"), p.minflt as i64, "{ctx}");
    assert_eq!(faults("major"), p.majflt as i64, "{ctx}");
}

const N: usize = 2_000;
const KTHREADS: usize = 40;

/// The tests' population: N processes and KTHREADS kernel threads.
fn population() -> SynthConfig {
    SynthConfig {
        processes: N,
        kernel_threads: KTHREADS,
        ..SynthConfig::default()
    }
}

#[test]
fn synthetic_tree_puts_a_share_of_processes_in_containers_of_every_runtime() {
    let dir = TempDir::new("containers");
    let tree = SyntheticTree::create(&dir.0, population()).expect("generate");
    let containers: Vec<_> = tree
        .processes()
        .iter()
        .filter_map(|p| p.container())
        .collect();
    let share = containers.len() as f64 / N as f64;
    assert!((0.2..0.8).contains(&share), "{share}");
    assert!(
        tree.processes()
            .iter()
            .all(|p| !(p.kernel_thread || p.comm == "systemd") || p.container().is_none())
    );
    let mut runtimes: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    // Pod UID → its distinct container ids; container id → its processes.
    let mut pods: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
    let mut per_container: HashMap<&str, usize> = HashMap::new();
    for c in &containers {
        *runtimes.entry(c.runtime).or_default() += 1;
        *per_container.entry(&c.id).or_default() += 1;
        if let Some(uid) = &c.pod_uid {
            pods.entry(uid).or_default().insert(&c.id);
        }
    }
    let names: Vec<_> = runtimes.keys().copied().collect();
    assert_eq!(
        names,
        [
            None,
            Some("containerd"),
            Some("cri-o"),
            Some("docker"),
            Some("podman")
        ]
    );
    assert!(
        pods.values().any(|ids| ids.len() > 1),
        "pods with several containers"
    );
    assert!(
        per_container.values().any(|&n| n > 1),
        "containers with several processes"
    );
    // The receiver sees what the files say (every process: assert_matches
    // in the round trip above); here, the raw line of a hybrid-host pod.
    let batch = receiver_for(tree.root()).scrape();
    assert!(batch.resources.iter().any(|r| {
        r.attributes
            .get_str("process.linux.cgroup")
            .is_some_and(|l| l.starts_with("12:pids:/kubepods/"))
    }));
}

#[test]
fn synthetic_tree_round_trips_through_the_receiver() {
    let dir = TempDir::new("roundtrip");
    let config = SynthConfig {
        seed: 42,
        death_rate: 0.01,
        pid_reuse: 0.3,
        ..population()
    };
    let mut tree = SyntheticTree::create(&dir.0, config).expect("generate");
    assert_eq!(tree.processes().len(), N + KTHREADS);
    let users = passwd(tree.root());
    let mut receiver = receiver_for(tree.root());

    let started = Instant::now();
    let batch = receiver.scrape();
    let mut previous_scrape = (started, Instant::now());
    let stats = receiver.last_scrape();
    assert_eq!(
        batch.resources.len(),
        N,
        "every user process, no kernel thread"
    );
    assert_eq!(stats.kernel_threads_skipped, KTHREADS as u64);
    assert_eq!(
        (stats.vanished, stats.parse_errors, stats.permission_denied),
        (0, 0, 0),
        "{stats:?}"
    );
    let seen = by_pid(&batch);
    for p in tree.processes().iter().filter(|p| !p.kernel_thread) {
        let r = seen
            .get(&p.pid)
            .unwrap_or_else(|| panic!("pid {} not scraped", p.pid));
        assert_matches(r, p, &tree, &users);
        assert!(
            r.metric("process.cpu.utilization").is_none(),
            "no utilization on a first scrape"
        );
    }
    // A realistic mix: many names, the kernel's comm truncation, and an
    // interpreter whose executable is not its comm.
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for p in tree.processes().iter().filter(|p| !p.kernel_thread) {
        *names.entry(p.executable_name()).or_default() += 1;
    }
    assert!(names.len() >= 25, "{names:?}");
    assert!(
        tree.processes()
            .iter()
            .any(|p| p.comm == "systemd-journal" && p.executable_name() == "systemd-journald")
    );
    assert!(
        tree.processes()
            .iter()
            .any(|p| p.comm == "gunicorn" && p.executable_name() == "python3.11")
    );
    assert_eq!(tree.process(1).map(|p| p.comm.as_str()), Some("systemd"));

    // Tick by tick: what advance() changed is what the next scrape shows.
    let mut previous = batch;
    let mut previous_truth: HashMap<u32, SynthProcess> = tree
        .processes()
        .iter()
        .map(|p| (p.pid, p.clone()))
        .collect();
    let (mut births, mut deaths, mut reuses, mut reparentings) = (0, 0, 0, 0);
    for _ in 0..6 {
        let tick = tree.advance().expect("advance");
        let scrape_start = Instant::now();
        let batch = receiver.scrape();
        let scrape_end = Instant::now();
        // The receiver's time between its two samples lies within these.
        let shortest = (scrape_start - previous_scrape.1).as_secs_f64();
        let longest = (scrape_end - previous_scrape.0).as_secs_f64();
        previous_scrape = (scrape_start, scrape_end);
        let stats = receiver.last_scrape();
        assert_eq!(batch.resources.len(), N, "population kept at N");
        assert_eq!((stats.vanished, stats.parse_errors), (0, 0), "{stats:?}");
        let seen = by_pid(&batch);
        let before = by_pid(&previous);

        for pid in &tick.died {
            if !tick.born.contains(pid) {
                assert!(!seen.contains_key(pid), "exited pid {pid} still scraped");
                assert!(tree.process(*pid).is_none());
            }
        }
        let mut fresh_pids = Vec::new();
        for pid in &tick.born {
            let p = tree.process(*pid).expect("born is alive");
            let r = seen
                .get(pid)
                .unwrap_or_else(|| panic!("born pid {pid} not scraped"));
            assert!(
                r.metric("process.cpu.utilization").is_none(),
                "a new process has no previous sample"
            );
            if !tick.reused.contains(pid) {
                assert!(
                    !previous_truth.contains_key(pid),
                    "pid {pid} reused but not reported"
                );
                fresh_pids.push(*pid);
            } else if let Some(old) = previous_truth.get(pid) {
                // A PID freed this very tick and handed out again: a new
                // process, told apart by its start time.
                assert!(p.starttime > old.starttime, "reused pid {pid} starts later");
                let old_r = before.get(pid).expect("old process was scraped");
                assert_ne!(
                    r.attributes.get("process.creation.time"),
                    old_r.attributes.get("process.creation.time")
                );
                assert_ne!(r.identity, old_r.identity, "a reused pid is a new identity");
            }
        }
        if let Some(&max_old) = previous_truth.keys().max() {
            // New PIDs count up (until they wrap at pid_max).
            assert!(fresh_pids.iter().all(|&p| p > 2), "{fresh_pids:?}");
            let above = fresh_pids.iter().filter(|&&p| p > max_old).count();
            assert_eq!(above, fresh_pids.len(), "fresh pids above {max_old}");
        }
        for pid in tick.reparented.iter().filter(|p| !tick.born.contains(p)) {
            if let Some(r) = seen.get(pid) {
                assert_eq!(r.attributes.get("process.parent_pid"), Some(&Value::Int(1)));
            }
        }

        // Survivors: same identity, counters only grow, and utilization is
        // their CPU-time delta over the wall time between the scrapes.
        let mut with_cpu = 0;
        for p in tree.processes().iter().filter(|p| !p.kernel_thread) {
            let r = seen[&p.pid];
            assert_matches(r, p, &tree, &users);
            if tick.born.contains(&p.pid) {
                continue;
            }
            let old = &previous_truth[&p.pid];
            assert_eq!(old.starttime, p.starttime);
            assert!(
                p.utime >= old.utime && p.stime >= old.stime,
                "pid {}",
                p.pid
            );
            assert!(p.read_bytes >= old.read_bytes && p.write_bytes >= old.write_bytes);
            assert!(
                p.minflt >= old.minflt && p.voluntary_ctxt_switches >= old.voluntary_ctxt_switches
            );
            assert_eq!(r.identity, before[&p.pid].identity);
            let util = double(r, "process.cpu.utilization", Some(("cpu.mode", "user")));
            let delta = (p.utime - old.utime) as f64 / tree.clock_ticks() as f64;
            if delta > 0.0 {
                with_cpu += 1;
                let (lo, hi) = (delta / (longest * ncpus()), delta / (shortest * ncpus()));
                assert!(
                    lo * 0.999 <= util && util <= hi * 1.001,
                    "pid {}: utilization {util} not in [{lo}, {hi}]",
                    p.pid
                );
            } else {
                assert_eq!(util, 0.0, "pid {}", p.pid);
            }
        }
        assert!(with_cpu > 0, "some processes used CPU this tick");

        births += tick.born.len();
        deaths += tick.died.len();
        reuses += tick.reused.len();
        reparentings += tick.reparented.len();
        previous_truth = tree
            .processes()
            .iter()
            .map(|p| (p.pid, p.clone()))
            .collect();
        previous = batch;
    }
    // Deterministic for seed 42; if the generator changes, pick a seed
    // where each happens within six ticks.
    assert!(births > 0 && deaths > 0, "births {births}, deaths {deaths}");
    assert!(reuses > 0, "no pid reuse in six ticks");
    assert!(reparentings > 0, "no re-parenting in six ticks");
}

/// Every file under `root`, path → bytes (symlinks as their target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let kind = entry.file_type().expect("type");
            if kind.is_symlink() {
                let target = fs::read_link(&path).expect("link");
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else if kind.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, fs::read(&path).expect("file"));
            }
        }
    }
    out
}

#[test]
fn synthetic_tree_is_deterministic_from_its_seed() {
    let (a, b, c) = (
        TempDir::new("det-a"),
        TempDir::new("det-b"),
        TempDir::new("det-c"),
    );
    let config = SynthConfig {
        processes: 300,
        kernel_threads: 10,
        seed: 7,
        ..SynthConfig::default()
    };
    let mut ta = SyntheticTree::create(&a.0, config.clone()).expect("a");
    let mut tb = SyntheticTree::create(&b.0, config.clone()).expect("b");
    let tc = SyntheticTree::create(&c.0, SynthConfig { seed: 8, ..config }).expect("c");
    assert_eq!(snapshot(&a.0), snapshot(&b.0));
    assert_ne!(snapshot(&a.0), snapshot(&c.0));
    assert_eq!(ta.processes(), tb.processes());
    for _ in 0..3 {
        assert_eq!(ta.advance().expect("a"), tb.advance().expect("b"));
    }
    assert_eq!(snapshot(&a.0), snapshot(&b.0));
    drop(tc);
}

#[test]
fn synthetic_tree_refuses_directories_it_did_not_make() {
    let dir = TempDir::new("refuse");
    fs::create_dir_all(&dir.0).expect("dir");
    fs::write(dir.0.join("precious.txt"), "keep me").expect("file");
    let small = SynthConfig {
        processes: 20,
        ..SynthConfig::default()
    };
    let err = SyntheticTree::create(&dir.0, small.clone())
        .err()
        .expect("a foreign non-empty directory is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert!(dir.0.join("precious.txt").exists());

    // An earlier synthetic tree is replaced, not merged into.
    let tree_dir = TempDir::new("replace");
    let first = SyntheticTree::create(
        &tree_dir.0,
        SynthConfig {
            processes: 50,
            ..small.clone()
        },
    )
    .expect("first");
    assert!(tree_dir.0.join(MARKER).is_file());
    drop(first);
    let second = SyntheticTree::create(&tree_dir.0, small).expect("regenerated");
    let pids = fs::read_dir(tree_dir.0.join("proc"))
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .count();
    assert_eq!(pids, second.processes().len());
    assert_eq!(pids, 20);

    let bad = SyntheticTree::create(
        &TempDir::new("bad").0,
        SynthConfig {
            processes: 0,
            ..SynthConfig::default()
        },
    )
    .err()
    .expect("zero processes");
    assert_eq!(bad.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn synthetic_tree_without_owners_belongs_to_the_current_user() {
    let dir = TempDir::new("owners");
    let config = SynthConfig {
        processes: 50,
        set_owners: false,
        ..SynthConfig::default()
    };
    let tree = SyntheticTree::create(&dir.0, config).expect("generate");
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(tree.processes().iter().all(|p| p.uid == euid));
    let users = passwd(tree.root());
    let owner = users
        .get(&euid)
        .expect("the current user is in passwd")
        .clone();
    let mut receiver = receiver_for(tree.root());
    let batch = receiver.scrape();
    assert_eq!(batch.resources.len(), 50);
    for r in &batch.resources {
        assert_eq!(r.attributes.get_str("process.owner"), Some(owner.as_str()));
    }
}

/// The scale the generator exists for; ignored by default because it
/// writes about 2 GiB (on tmpfs when there is one).
/// `cargo test -p phoenix-benches --test synthetic_proc -- --ignored`
#[test]
#[ignore = "writes a 100,000-process tree (about 2 GiB); run with --ignored"]
fn synthetic_tree_of_100k_processes_scrapes_whole() {
    const BIG: usize = 100_000;
    let dir = TempDir::new("100k");
    let config = SynthConfig {
        processes: BIG,
        kernel_threads: 200,
        max_fds: 4,
        ..SynthConfig::default()
    };
    let mut tree = SyntheticTree::create(&dir.0, config).expect("generate");
    let mut receiver = receiver_for(tree.root());
    assert_eq!(receiver.scrape().resources.len(), BIG);
    let tick = tree.advance().expect("advance");
    assert!(!tick.born.is_empty() && !tick.died.is_empty());
    let batch = receiver.scrape();
    let stats = receiver.last_scrape();
    assert_eq!(batch.resources.len(), BIG);
    assert_eq!((stats.vanished, stats.parse_errors), (0, 0), "{stats:?}");
    assert_eq!(stats.kernel_threads_skipped, 200);
    // Container attribution at scale: the processes' share in containers.
    let attributed = batch
        .resources
        .iter()
        .filter(|r| r.attributes.get("container.id").is_some())
        .count();
    assert!((BIG / 5..BIG * 4 / 5).contains(&attributed), "{attributed}");
}
