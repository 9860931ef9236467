//! The procfs receiver against a fake root: a temp dir laid out like
//! `/proc` and `/etc/passwd`, so every value, every failure and every change
//! between scrapes (exit, PID reuse, exec, re-parenting) is under the test's
//! control.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_processors::{Batch, MetricKind, Number, Resource, Value};
use phoenix_telemetry::registry::Registry;

const BTIME: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z
const PF_KTHREAD: u32 = 0x0020_0000;

fn sysconf(name: libc::c_int) -> u64 {
    phoenix_telemetry::sys::sysconf(name).expect("sysconf")
}

fn clock_ticks() -> u64 {
    sysconf(libc::_SC_CLK_TCK)
}

/// A temp dir that is removed when the test ends, pass or fail.
struct FakeRoot {
    path: PathBuf,
}

impl FakeRoot {
    fn new(tag: &str) -> FakeRoot {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "phoenix-procfs-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(path.join("proc")).expect("proc dir");
        fs::create_dir_all(path.join("etc")).expect("etc dir");
        fs::write(
            path.join("proc/stat"),
            format!("cpu  10 0 10 100 0 0 0 0 0 0\nctxt 1000\nbtime {BTIME}\nprocesses 500\n"),
        )
        .expect("proc/stat");
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        // The fixture's files are owned by whoever runs the test: name that
        // uid something no real passwd has, to prove this file was used.
        fs::write(
            path.join("etc/passwd"),
            format!("# fixture\nphoenix-tester:x:{uid}:{uid}::/:/bin/sh\n"),
        )
        .expect("passwd");
        FakeRoot { path }
    }

    fn pid_dir(&self, pid: u32) -> PathBuf {
        self.path.join("proc").join(pid.to_string())
    }

    fn add(&self, p: &FakeProcess) {
        let dir = self.pid_dir(p.pid);
        fs::create_dir_all(dir.join("fd")).expect("pid dir");
        fs::write(dir.join("stat"), p.stat_line()).expect("stat");
        fs::write(dir.join("cmdline"), p.cmdline).expect("cmdline");
        fs::write(
            dir.join("io"),
            format!(
                "rchar: 999999\nwchar: 888888\nsyscr: 1\nsyscw: 2\nread_bytes: {}\nwrite_bytes: {}\ncancelled_write_bytes: 0\n",
                p.read_bytes, p.write_bytes
            ),
        )
        .expect("io");
        fs::write(
            dir.join("status"),
            format!(
                "Name:\t{}\nState:\tS (sleeping)\nThreads:\t{}\nvoluntary_ctxt_switches:\t{}\nnonvoluntary_ctxt_switches:\t{}\n",
                p.comm, p.threads, p.voluntary, p.involuntary
            ),
        )
        .expect("status");
        let exe = dir.join("exe");
        let _ = fs::remove_file(&exe);
        if let Some(target) = p.exe {
            std::os::unix::fs::symlink(target, &exe).expect("exe link");
        }
        for fd in 0..p.fds {
            fs::write(dir.join("fd").join(fd.to_string()), "").expect("fd");
        }
    }

    fn remove(&self, pid: u32) {
        fs::remove_dir_all(self.pid_dir(pid)).expect("remove pid dir");
    }

    fn config(&self) -> ProcfsConfig {
        ProcfsConfig {
            root_path: self.path.clone(),
            host_name: Some("fake-host".into()),
            ..ProcfsConfig::default()
        }
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[derive(Clone)]
struct FakeProcess {
    pid: u32,
    ppid: u32,
    comm: &'static str,
    flags: u32,
    minflt: u64,
    majflt: u64,
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
    rss: i64,
    cmdline: &'static [u8],
    exe: Option<&'static str>,
    read_bytes: u64,
    write_bytes: u64,
    voluntary: u64,
    involuntary: u64,
    fds: u32,
}

impl FakeProcess {
    fn nginx() -> FakeProcess {
        FakeProcess {
            pid: 100,
            ppid: 1,
            comm: "nginx",
            flags: 0x0040_0140,
            minflt: 5000,
            majflt: 12,
            utime: 250,
            stime: 50,
            threads: 3,
            starttime: 500,
            vsize: 123_456_789,
            rss: 1000,
            cmdline: b"/usr/sbin/nginx\0-g\0daemon off;\0",
            exe: Some("/usr/sbin/nginx"),
            read_bytes: 4096,
            write_bytes: 8192,
            voluntary: 10,
            involuntary: 2,
            fds: 4,
        }
    }

    fn stat_line(&self) -> String {
        format!(
            "{} ({}) S {} {} {} 0 -1 {} {} 0 {} 0 {} {} 0 0 20 0 {} 0 {} {} {} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            self.pid,
            self.comm,
            self.ppid,
            self.pid,
            self.pid,
            self.flags,
            self.minflt,
            self.majflt,
            self.utime,
            self.stime,
            self.threads,
            self.starttime,
            self.vsize,
            self.rss
        )
    }
}

fn all_metrics(config: &mut ProcfsConfig) {
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
}

fn find(batch: &Batch, pid: i64) -> Option<&Resource> {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&Value::Int(pid)))
}

fn point(r: &Resource, metric: &str, attr: Option<(&str, &str)>) -> Option<(Number, u64)> {
    let m = r.metric(metric)?;
    m.points
        .iter()
        .find(|p| match attr {
            Some((k, v)) => p.attributes.get_str(k) == Some(v),
            None => p.attributes.is_empty(),
        })
        .map(|p| (p.value, p.start_time_unix_nano))
}

fn double(n: Number) -> f64 {
    match n {
        Number::Double(v) => v,
        Number::Int(v) => panic!("expected a double point, got int {v}"),
    }
}

fn int(n: Number) -> i64 {
    match n {
        Number::Int(v) => v,
        Number::Double(v) => panic!("expected an int point, got double {v}"),
    }
}

fn creation_nanos(starttime: u64) -> u64 {
    BTIME * 1_000_000_000 + starttime * 1_000_000_000 / clock_ticks()
}

#[test]
fn receiver_takes_every_metric_and_attribute_from_the_right_file() {
    let root = FakeRoot::new("values");
    let nginx = FakeProcess::nginx();
    root.add(&nginx);
    let mut config = root.config();
    all_metrics(&mut config);
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let batch = receiver.scrape();
    assert!(batch.time_unix_nano >= before);
    assert_eq!(
        batch.common_attributes.get_str("host.name"),
        Some("fake-host")
    );
    assert_eq!(batch.resources.len(), 1);
    let r = find(&batch, 100).expect("nginx emitted");
    let a = &r.attributes;
    assert_eq!(a.get("process.parent_pid"), Some(&Value::Int(1)));
    // btime + 500 ticks = 22:13:20 + 5 s at the usual 100 Hz.
    let start = creation_nanos(500);
    if clock_ticks() == 100 {
        assert_eq!(
            a.get_str("process.creation.time"),
            Some("2023-11-14T22:13:25.000Z")
        );
    }
    assert_eq!(a.get_str("process.executable.name"), Some("nginx"));
    assert_eq!(
        a.get_str("process.executable.path"),
        Some("/usr/sbin/nginx")
    );
    assert_eq!(a.get_str("process.command"), Some("/usr/sbin/nginx"));
    assert_eq!(
        a.get_str("process.command_line"),
        Some("/usr/sbin/nginx -g daemon off;")
    );
    assert_eq!(a.get_str("process.owner"), Some("phoenix-tester"));
    assert_eq!(a.len(), 8, "{a:?}");

    let ticks = clock_ticks() as f64;
    let (user, user_start) =
        point(r, "process.cpu.time", Some(("cpu.mode", "user"))).expect("user");
    assert!((double(user) - 250.0 / ticks).abs() < 1e-9);
    assert_eq!(user_start, start, "counters start at process creation");
    let (system, _) = point(r, "process.cpu.time", Some(("cpu.mode", "system"))).expect("system");
    assert!((double(system) - 50.0 / ticks).abs() < 1e-9);
    assert!(
        r.metric("process.cpu.utilization").is_none(),
        "no utilization without a previous scrape"
    );
    let page = sysconf(libc::_SC_PAGESIZE) as i64;
    let (rss, rss_start) = point(r, "process.memory.usage", None).expect("rss");
    assert_eq!(int(rss), 1000 * page);
    assert_eq!(rss_start, start, "up-down counters start at creation too");
    assert_eq!(
        point(r, "process.memory.virtual", None).map(|p| int(p.0)),
        Some(123_456_789)
    );
    let io = |dir| point(r, "process.disk.io", Some(("disk.io.direction", dir))).map(|p| int(p.0));
    assert_eq!(io("read"), Some(4096), "read_bytes, not rchar");
    assert_eq!(io("write"), Some(8192));
    assert_eq!(
        point(r, "process.thread.count", None).map(|p| int(p.0)),
        Some(3)
    );
    assert_eq!(
        point(r, "process.unix.file_descriptor.count", None).map(|p| int(p.0)),
        Some(4),
        "not procfs: the fd entries are counted"
    );
    let cs = |t| {
        point(
            r,
            "process.context_switches",
            Some(("process.context_switch.type", t)),
        )
        .map(|p| int(p.0))
    };
    assert_eq!(cs("voluntary"), Some(10));
    assert_eq!(cs("involuntary"), Some(2));
    let faults = |t| {
        point(
            r,
            "process.paging.faults",
            Some(("system.paging.fault.type", t)),
        )
        .map(|p| int(p.0))
    };
    assert_eq!(faults("minor"), Some(5000));
    assert_eq!(faults("major"), Some(12));
    let (uptime, uptime_start) = point(r, "process.uptime", None).expect("uptime");
    let expected = (batch.time_unix_nano - start) as f64 / 1e9;
    assert!((double(uptime) - expected).abs() < 1e-6);
    assert_eq!(uptime_start, 0, "gauges have no start time");

    // Kinds and units as semconv has them.
    let kind = |m| r.metric(m).map(|m| (m.desc.kind, m.desc.unit.to_string()));
    assert_eq!(
        kind("process.cpu.time"),
        Some((MetricKind::COUNTER, "s".into()))
    );
    assert_eq!(
        kind("process.memory.usage"),
        Some((MetricKind::UP_DOWN_COUNTER, "By".into()))
    );
    assert_eq!(
        kind("process.uptime"),
        Some((MetricKind::Gauge, "s".into()))
    );
    assert_eq!(r.metrics.len(), 9, "all but utilization");
    assert!(r.identity.is_some());

    let stats = receiver.last_scrape();
    assert_eq!(stats.processes, 1);
    assert_eq!(
        (
            stats.vanished,
            stats.permission_denied,
            stats.parse_errors,
            stats.kernel_threads_skipped
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn receiver_defaults_emit_the_collectors_four_metrics() {
    let root = FakeRoot::new("defaults");
    root.add(&FakeProcess::nginx());
    let mut receiver = ProcfsReceiver::new(&root.config(), &Registry::new()).expect("receiver");
    let batch = receiver.scrape();
    let names: Vec<&str> = batch.resources[0]
        .metrics
        .iter()
        .map(|m| &*m.desc.name)
        .collect();
    assert_eq!(
        names,
        [
            "process.cpu.time",
            "process.memory.usage",
            "process.memory.virtual",
            "process.disk.io"
        ]
    );
}

#[test]
fn receiver_counts_odd_processes_and_failures_without_failing() {
    let root = FakeRoot::new("odd");
    root.add(&FakeProcess::nginx());
    // A kernel thread: skipped by default.
    root.add(&FakeProcess {
        pid: 2,
        ppid: 0,
        comm: "kthreadd",
        flags: PF_KTHREAD | 0x8040,
        cmdline: b"",
        exe: None,
        rss: 0,
        vsize: 0,
        ..FakeProcess::nginx()
    });
    // A comm with spaces and parentheses, an empty command line and no exe
    // (a zombie looks like this).
    root.add(&FakeProcess {
        pid: 200,
        comm: "a) (b",
        cmdline: b"",
        exe: None,
        ..FakeProcess::nginx()
    });
    // Garbage in stat.
    root.add(&FakeProcess::nginx_at(300));
    fs::write(root.pid_dir(300).join("stat"), "300 (x) R garbage").expect("garbage");
    // Listed, but gone before its stat was read.
    fs::create_dir_all(root.pid_dir(400)).expect("empty pid dir");
    // io unreadable for another reason than permissions: the process is
    // still emitted, without process.disk.io.
    root.add(&FakeProcess::nginx_at(500));
    fs::remove_file(root.pid_dir(500).join("io")).expect("rm io");
    fs::create_dir(root.pid_dir(500).join("io")).expect("io as a dir");

    let registry = Registry::new();
    let mut receiver = ProcfsReceiver::new(&root.config(), &registry).expect("receiver");
    let batch = receiver.scrape();
    let mut pids: Vec<i64> = batch
        .resources
        .iter()
        .filter_map(|r| match r.attributes.get("process.pid") {
            Some(Value::Int(p)) => Some(*p),
            _ => None,
        })
        .collect();
    pids.sort();
    assert_eq!(pids, [100, 200, 500]);

    let odd = find(&batch, 200).expect("odd comm emitted");
    assert_eq!(
        odd.attributes.get_str("process.executable.name"),
        Some("a) (b"),
        "no exe: the name is comm, parsed up to the last parenthesis"
    );
    assert_eq!(odd.attributes.get("process.executable.path"), None);
    assert_eq!(odd.attributes.get("process.command"), None);
    assert_eq!(odd.attributes.get("process.command_line"), None);
    assert!(odd.metric("process.cpu.time").is_some());

    let no_io = find(&batch, 500).expect("emitted without io");
    assert!(no_io.metric("process.disk.io").is_none());
    assert!(no_io.metric("process.memory.usage").is_some());

    let stats = receiver.last_scrape();
    assert_eq!(stats.processes, 3);
    assert_eq!(stats.kernel_threads_skipped, 1);
    assert_eq!(stats.vanished, 1, "pid 400");
    assert_eq!(stats.parse_errors, 2, "pid 300's stat, pid 500's io");
    assert_eq!(stats.permission_denied, 0);

    let text = registry.render();
    for line in [
        "phoenix_receiver_scrape_errors_total{receiver=\"procfs\",kind=\"vanished\"} 1",
        "phoenix_receiver_scrape_errors_total{receiver=\"procfs\",kind=\"parse\"} 2",
        "phoenix_receiver_scrape_errors_total{receiver=\"procfs\",kind=\"permission_denied\"} 0",
        "phoenix_receiver_kernel_threads_skipped_total{receiver=\"procfs\"} 1",
        "phoenix_receiver_scrapes_total{receiver=\"procfs\"} 1",
        "phoenix_receiver_processes{receiver=\"procfs\"} 3",
        "phoenix_receiver_process_cache_size{receiver=\"procfs\"} 3",
        "phoenix_receiver_scrape_duration_seconds_count{receiver=\"procfs\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    // With kernel threads included, kthreadd is a process like any other.
    let mut config = root.config();
    config.include_kernel_threads = true;
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");
    let batch = receiver.scrape();
    let kthreadd = find(&batch, 2).expect("kernel thread included");
    assert_eq!(
        kthreadd.attributes.get_str("process.executable.name"),
        Some("kthreadd")
    );
    assert_eq!(receiver.last_scrape().kernel_threads_skipped, 0);
}

impl FakeProcess {
    fn nginx_at(pid: u32) -> FakeProcess {
        FakeProcess {
            pid,
            ..FakeProcess::nginx()
        }
    }
}

fn cache_size(registry: &Registry) -> String {
    registry
        .render()
        .lines()
        .find(|l| l.starts_with("phoenix_receiver_process_cache_size{"))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn receiver_follows_exit_pid_reuse_exec_and_reparenting() {
    let root = FakeRoot::new("lifecycle");
    let mut p = FakeProcess::nginx();
    root.add(&p);
    let mut config = root.config();
    all_metrics(&mut config);
    let registry = Registry::new();
    let mut receiver = ProcfsReceiver::new(&config, &registry).expect("receiver");
    let first = receiver.scrape();
    let first_attrs = find(&first, 100).expect("first").attributes.clone();
    let first_identity = find(&first, 100).and_then(|r| r.identity);

    // Same process, next scrape: attributes are the cached set itself.
    let second = receiver.scrape();
    let r = find(&second, 100).expect("second");
    assert_eq!(r.attributes, first_attrs);
    assert_eq!(r.identity, first_identity);
    assert!(r.metric("process.cpu.utilization").is_some());

    // Re-parented (its parent exited): parent_pid follows.
    p.ppid = 77;
    root.add(&p);
    let batch = receiver.scrape();
    let r = find(&batch, 100).expect("reparented");
    assert_eq!(
        r.attributes.get("process.parent_pid"),
        Some(&Value::Int(77))
    );
    assert_eq!(r.identity, first_identity, "still the same process");

    // exec: same PID and start time, new comm and command line. The identity
    // is read again; the CPU history is kept (utilization still reported).
    p.comm = "worker";
    p.cmdline = b"/usr/bin/worker\0--fast\0";
    p.exe = Some("/usr/bin/worker");
    root.add(&p);
    let batch = receiver.scrape();
    let r = find(&batch, 100).expect("exec'd");
    assert_eq!(
        r.attributes.get_str("process.executable.name"),
        Some("worker")
    );
    assert_eq!(
        r.attributes.get_str("process.command_line"),
        Some("/usr/bin/worker --fast")
    );
    assert!(r.metric("process.cpu.utilization").is_some());

    // Caught mid-exec: the new name already, the command line not yet
    // (empty). The next scrape reads it again rather than keeping none.
    p.comm = "java";
    p.cmdline = b"";
    p.exe = Some("/usr/bin/java");
    root.add(&p);
    let batch = receiver.scrape();
    let r = find(&batch, 100).expect("mid-exec");
    assert_eq!(r.attributes.get_str("process.command_line"), None);
    p.cmdline = b"java\0-jar\0app.jar\0";
    root.add(&p);
    let batch = receiver.scrape();
    let r = find(&batch, 100).expect("after the exec");
    assert_eq!(
        r.attributes.get_str("process.command_line"),
        Some("java -jar app.jar")
    );
    assert_eq!(
        r.attributes.get_str("process.executable.name"),
        Some("java")
    );

    // PID reuse: the same PID with a later start time is a new process.
    p.starttime = 90_000;
    p.comm = "redis-server";
    p.cmdline = b"redis-server\0*:6379\0";
    p.exe = Some("/usr/bin/redis-server (deleted)");
    root.add(&p);
    let batch = receiver.scrape();
    let r = find(&batch, 100).expect("reused pid");
    let expected_start = creation_nanos(90_000);
    assert_eq!(
        point(r, "process.cpu.time", Some(("cpu.mode", "user"))).map(|p| p.1),
        Some(expected_start),
        "the new process's creation time"
    );
    assert_ne!(
        r.attributes.get("process.creation.time"),
        first_attrs.get("process.creation.time")
    );
    assert_ne!(r.identity, first_identity);
    assert_eq!(
        r.attributes.get_str("process.executable.path"),
        Some("/usr/bin/redis-server"),
        "a replaced binary's path without the ' (deleted)' marker"
    );
    assert!(
        r.metric("process.cpu.utilization").is_none(),
        "a new process has no previous CPU sample"
    );
    assert_eq!(cache_size(&registry), "1", "the old entry was replaced");

    // Exit: gone from the batch and from the cache.
    root.remove(100);
    root.add(&FakeProcess::nginx_at(101));
    let batch = receiver.scrape();
    assert!(find(&batch, 100).is_none());
    assert!(find(&batch, 101).is_some());
    assert_eq!(cache_size(&registry), "1");
    assert_eq!(
        receiver.last_scrape().vanished,
        0,
        "an exit between scrapes is no error"
    );
}

#[test]
fn receiver_cpu_utilization_is_cpu_time_delta_over_wall_time_and_cpus() {
    let root = FakeRoot::new("utilization");
    let mut p = FakeProcess::nginx();
    root.add(&p);
    let mut config = root.config();
    config
        .metrics
        .insert("process.cpu.utilization".into(), Toggle { enabled: true });
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");
    let t0 = Instant::now();
    receiver.scrape();
    let t1 = Instant::now();

    // One CPU-second of user time and 0.2 s of system time later...
    let ticks = clock_ticks();
    p.utime += ticks;
    p.stime += ticks / 5;
    root.add(&p);
    std::thread::sleep(Duration::from_millis(200));

    let t2 = Instant::now();
    let batch = receiver.scrape();
    let t3 = Instant::now();
    let r = find(&batch, 100).expect("process");
    let util = |mode| {
        point(r, "process.cpu.utilization", Some(("cpu.mode", mode)))
            .map(|(v, start)| {
                assert_eq!(start, 0, "a gauge");
                double(v)
            })
            .expect("utilization on the second scrape")
    };
    // The receiver's elapsed time lies between the two scrapes' bounds.
    let ncpus = sysconf(libc::_SC_NPROCESSORS_ONLN) as f64;
    let shortest = (t2 - t1).as_secs_f64();
    let longest = (t3 - t0).as_secs_f64();
    let within = |got: f64, cpu_seconds: f64| {
        let (lo, hi) = (
            cpu_seconds / (longest * ncpus),
            cpu_seconds / (shortest * ncpus),
        );
        assert!(lo <= got && got <= hi, "{got} not in [{lo}, {hi}]");
    };
    within(util("user"), 1.0);
    within(util("system"), 0.2);
}

#[test]
fn receiver_leaves_out_disabled_attributes_and_host_name() {
    let root = FakeRoot::new("toggles");
    root.add(&FakeProcess::nginx());
    let mut config = root.config();
    for a in ["host.name", "process.command_line", "process.owner"] {
        config
            .resource_attributes
            .insert(a.into(), Toggle { enabled: false });
    }
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");
    let batch = receiver.scrape();
    assert!(batch.common_attributes.is_empty());
    let a = &batch.resources[0].attributes;
    assert_eq!(a.get("process.command_line"), None);
    assert_eq!(a.get("process.owner"), None);
    assert_eq!(a.get_str("process.command"), Some("/usr/sbin/nginx"));
}

#[test]
fn receiver_construction_fails_on_an_unusable_root() {
    let root = FakeRoot::new("nobtime");
    fs::write(root.path.join("proc/stat"), "cpu 1 2 3\n").expect("stat without btime");
    let err = ProcfsReceiver::new(&root.config(), &Registry::new())
        .err()
        .expect("no btime");
    assert!(format!("{err:#}").contains("boot time"), "{err:#}");
    let missing = Path::new("/nonexistent/phoenix");
    let config = ProcfsConfig {
        root_path: missing.into(),
        ..ProcfsConfig::default()
    };
    assert!(ProcfsReceiver::new(&config, &Registry::new()).is_err());
}

#[test]
fn receiver_reads_the_container_from_the_cgroup_once_per_process_life() {
    const ID: &str = "0b1c2d3e4f5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let root = FakeRoot::new("cgroup");
    let mut p = FakeProcess::nginx();
    root.add(&p);
    let cgroup = root.pid_dir(100).join("cgroup");
    let slice = "kubepods-burstable-pod1a2b3c4d_0000_4e7d_9c3a_0d1e2f3a4b5c.slice";
    fs::write(
        &cgroup,
        format!("0::/kubepods.slice/kubepods-burstable.slice/{slice}/cri-containerd-{ID}.scope\n"),
    )
    .expect("cgroup");
    // A process without a cgroup file (a fixture, a kernel without cgroups)
    // is still emitted, without container attributes.
    root.add(&FakeProcess::nginx_at(101));
    let mut config = root.config();
    config
        .resource_attributes
        .insert("process.linux.cgroup".into(), Toggle { enabled: true });
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");

    let batch = receiver.scrape();
    let a = &find(&batch, 100).expect("containerised").attributes;
    assert_eq!(a.get_str("container.id"), Some(ID));
    assert_eq!(a.get_str("container.runtime.name"), Some("containerd"));
    assert_eq!(
        a.get_str("k8s.pod.uid"),
        Some("1a2b3c4d-0000-4e7d-9c3a-0d1e2f3a4b5c")
    );
    assert!(
        a.get_str("process.linux.cgroup")
            .is_some_and(|l| l.starts_with("0::/kubepods.slice/") && l.ends_with(".scope"))
    );
    let plain = &find(&batch, 101).expect("no cgroup file").attributes;
    assert_eq!(plain.get("container.id"), None);
    assert_eq!(plain.get("process.linux.cgroup"), None);
    assert_eq!(receiver.last_scrape().vanished, 0);
    assert_eq!(receiver.last_scrape().parse_errors, 0);

    // The file is not read again while the process lives...
    fs::write(&cgroup, format!("0::/docker/{OTHER}\n")).expect("cgroup");
    let batch = receiver.scrape();
    let a = &find(&batch, 100).expect("same process").attributes;
    assert_eq!(a.get_str("container.id"), Some(ID));
    // ...but is after an exec (runc moves its init into the container's
    // cgroup and then execs the entrypoint).
    p.comm = "worker";
    root.add(&p);
    let batch = receiver.scrape();
    let a = &find(&batch, 100).expect("exec'd").attributes;
    assert_eq!(a.get_str("container.id"), Some(OTHER));
    assert_eq!(a.get_str("container.runtime.name"), Some("docker"));
    assert_eq!(a.get("k8s.pod.uid"), None);

    // Every container attribute off: the file is not read at all (an
    // unreadable one would count as an error otherwise).
    fs::remove_file(&cgroup).expect("rm");
    fs::create_dir(&cgroup).expect("a directory cannot be read as a file");
    for name in [
        "container.id",
        "container.runtime.name",
        "k8s.pod.uid",
        "process.linux.cgroup",
    ] {
        config
            .resource_attributes
            .insert(name.into(), Toggle { enabled: false });
    }
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver");
    let batch = receiver.scrape();
    assert_eq!(batch.resources.len(), 2);
    assert_eq!(receiver.last_scrape().parse_errors, 0);
    assert!(
        batch
            .resources
            .iter()
            .all(|r| r.attributes.get("container.id").is_none())
    );
}
