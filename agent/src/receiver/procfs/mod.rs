//! The procfs receiver: one pass over `<root_path>/proc` per interval, one
//! [`Resource`] per process, OpenTelemetry semantic-convention metrics.
//!
//! Cost model. Per process and scrape, with the default metrics, the
//! receiver does what any `/proc` reader must: open, read and close
//! `PID/stat` and `PID/io`. Everything else is kept off that path:
//! - identity (command line, executable, owner, creation time, container from
//!   `PID/cgroup`, `cgroup.rs`) is read once per process and cached with its
//!   resource attributes (`cache.rs`), and again after an exec;
//! - `PID/status` and `PID/fd` are touched only for the metrics that need them;
//! - files are read into one reused buffer through one reused relative path
//!   (`sys.rs`) and parsed in place (`parse.rs`);
//! - metric descriptors and point attribute sets are built once and shared
//!   (`metrics.rs`), so a resource costs one `Vec` and reference-count increments.
//!
//! A process that exits mid-scrape, or a file the agent may not read, is
//! normal: it is counted (self-metrics and [`ScrapeStats`]), what could be
//! read is still emitted, and nothing is logged per process.

mod cache;
mod cgroup;
mod metrics;
mod parse;
mod sys;
mod users;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use phoenix_processors::semconv;
use phoenix_processors::time::format_rfc3339_millis;
use phoenix_processors::{
    Attributes, Batch, Interner, KeyValue, Metric, MetricDesc, Number, Point, Problem, Resource,
    Str, Value,
};
use smallvec::{SmallVec, smallvec};

use phoenix_telemetry::registry::{Counter, DURATION_BUCKETS, Gauge, Histogram, Registry};

use cache::{AttrKeys, CachedProcess, Container, CpuSample, Identity, ProcessCache};
use metrics::{Descs, PointAttrs};
use parse::{ContextSwitches, Io, Rollup, Stat};
/// The receiver's config lives in the config crate, beside the others.
pub use phoenix_config::receiver::procfs::{Naming, ProcfsConfig, Toggle};
pub(crate) use sys::hostname;
use sys::{Dir, PidPath, ReadError};
use users::Users;

/// What the last scrape saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Processes emitted (resources in the batch).
    pub processes: usize,
    /// Processes that exited between being listed and being read.
    pub vanished: u64,
    /// Files the agent was not allowed to read (the process is still
    /// emitted without the metric or attribute that file feeds).
    pub permission_denied: u64,
    /// Files that could not be parsed, or read for a reason other than the
    /// two above.
    pub parse_errors: u64,
    pub kernel_threads_skipped: u64,
    pub duration: Duration,
}

impl ScrapeStats {
    fn count(&mut self, e: ReadError) {
        match e {
            ReadError::Vanished => self.vanished += 1,
            ReadError::PermissionDenied => self.permission_denied += 1,
            ReadError::Unreadable => self.parse_errors += 1,
        }
    }
}

/// The receiver's self-metrics, registered once and recorded once per scrape.
struct SelfMetrics {
    duration: Arc<Histogram>,
    processes: Arc<Gauge>,
    vanished: Arc<Counter>,
    permission_denied: Arc<Counter>,
    parse_errors: Arc<Counter>,
    kernel_threads_skipped: Arc<Counter>,
    scrapes: Arc<Counter>,
    cache_size: Arc<Gauge>,
}

impl SelfMetrics {
    fn register(registry: &Registry) -> SelfMetrics {
        const RECEIVER: &[&str] = &["receiver"];
        const PROCFS: &[&str] = &["procfs"];
        let errors = |kind: &str| {
            registry.counter(
                "phoenix_receiver_scrape_errors_total",
                "Per-process read failures: vanished (exited mid-scrape), permission_denied, parse (malformed or unreadable file).",
                &["receiver", "kind"],
                &["procfs", kind],
            )
        };
        SelfMetrics {
            duration: registry.histogram(
                "phoenix_receiver_scrape_duration_seconds",
                "Time one scrape takes.",
                DURATION_BUCKETS,
                RECEIVER,
                PROCFS,
            ),
            processes: registry.gauge(
                "phoenix_receiver_processes",
                "Processes emitted by the last scrape.",
                RECEIVER,
                PROCFS,
            ),
            vanished: errors("vanished"),
            permission_denied: errors("permission_denied"),
            parse_errors: errors("parse"),
            kernel_threads_skipped: registry.counter(
                "phoenix_receiver_kernel_threads_skipped_total",
                "Kernel threads not emitted (include_kernel_threads is off).",
                RECEIVER,
                PROCFS,
            ),
            scrapes: registry.counter(
                "phoenix_receiver_scrapes_total",
                "Scrapes done.",
                RECEIVER,
                PROCFS,
            ),
            cache_size: registry.gauge(
                "phoenix_receiver_process_cache_size",
                "Processes whose identity is cached.",
                RECEIVER,
                PROCFS,
            ),
        }
    }

    fn record(&self, stats: &ScrapeStats, cache_size: usize) {
        self.duration.observe(stats.duration.as_secs_f64());
        self.processes.set(stats.processes as f64);
        self.vanished.add(stats.vanished);
        self.permission_denied.add(stats.permission_denied);
        self.parse_errors.add(stats.parse_errors);
        self.kernel_threads_skipped
            .add(stats.kernel_threads_skipped);
        self.scrapes.inc();
        self.cache_size.set(cache_size as f64);
    }
}

/// Constants of the machine, read once.
#[derive(Debug, Clone, Copy)]
struct Machine {
    boot_time_unix_nano: u64,
    clock_ticks: u64,
    page_size: u64,
    ncpus: u64,
}

impl Machine {
    /// When a process that started `starttime` ticks after boot was created.
    fn creation_unix_nano(&self, starttime: u64) -> u64 {
        // In u128: ticks × 10⁹ overflows u64 after ~6 years of uptime at 100 Hz.
        let since_boot = u128::from(starttime) * 1_000_000_000 / u128::from(self.clock_ticks);
        u64::try_from(u128::from(self.boot_time_unix_nano) + since_boot).unwrap_or(u64::MAX)
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.clock_ticks as f64
    }
}

/// Reads what identifies a new process; holds what that needs besides the
/// cache the result goes into, so the scrape loop can borrow both at once.
struct IdentityReader {
    keys: AttrKeys,
    users: Users,
    interner: Interner,
    /// Reused for cmdline and exe, which are read while the stat buffer is borrowed.
    scratch: Vec<u8>,
}

impl IdentityReader {
    /// The identity of the process `path` points at, or `None` if it vanished.
    fn read(
        &mut self,
        dir: &Dir,
        path: &mut PidPath,
        stat: &Stat<'_>,
        creation_unix_nano: u64,
        stats: &mut ScrapeStats,
    ) -> Option<Identity> {
        let mut command = None;
        let mut command_line = None;
        if self.keys.needs_cmdline() {
            let read = dir.read_at(path.file(c"cmdline"), &mut self.scratch);
            if optional(read, stats).ok()?.is_some() {
                let mut args = parse::cmdline_args(&self.scratch);
                if let Some(first) = args.next() {
                    command = Some(intern_lossy(&mut self.interner, first));
                    if self.keys.command_line.is_some() {
                        let mut line = String::from_utf8_lossy(first).into_owned();
                        for arg in args {
                            line.push(' ');
                            line.push_str(&String::from_utf8_lossy(arg));
                        }
                        command_line = Some(self.interner.intern(&line));
                    }
                }
            }
        }

        let mut executable_path = None;
        if self.keys.needs_exe() {
            match dir.readlink_at(path.file(c"exe"), &mut self.scratch) {
                Ok(()) => {
                    // A binary replaced on disk (an upgrade) reads "/path (deleted)";
                    // the path it ran from is still the useful part.
                    let target = self
                        .scratch
                        .strip_suffix(b" (deleted)")
                        .unwrap_or(&self.scratch);
                    if !target.is_empty() {
                        executable_path = Some(intern_lossy(&mut self.interner, target));
                    }
                }
                // Kernel threads and zombies have no exe link: not an error.
                Err(e) => match ReadError::classify(&e) {
                    ReadError::Vanished => {}
                    other => stats.count(other),
                },
            }
        }
        let executable_name = match &executable_path {
            Some(p) => {
                let base = p.rsplit('/').next().unwrap_or(p);
                self.interner.intern(base)
            }
            None => intern_lossy(&mut self.interner, stat.comm),
        };

        let owner = if self.keys.needs_owner() {
            let st = optional(dir.stat_at(path.file(c"")), stats).ok()?;
            st.map(|st| self.users.name(st.uid))
        } else {
            None
        };
        let container = if self.keys.needs_cgroup() {
            self.read_container(dir, path, stats).ok()?
        } else {
            Container::default()
        };

        Some(Identity {
            pid: stat.pid,
            ppid: stat.ppid,
            creation_time: format_rfc3339_millis(creation_unix_nano).into(),
            executable_name,
            executable_path,
            command,
            command_line,
            owner,
            container,
        })
    }

    /// The container of the process `path` points at, from its cgroup file;
    /// `Container::default()` outside a container or when unreadable.
    fn read_container(
        &mut self,
        dir: &Dir,
        path: &mut PidPath,
        stats: &mut ScrapeStats,
    ) -> Result<Container, Gone> {
        // A kernel without cgroups has no such file: no container.
        let read = dir.read_at(path.file(c"cgroup"), &mut self.scratch);
        let read = absent_if_missing(dir, path, read);
        if optional(read, stats)?.flatten().is_none() {
            return Ok(Container::default());
        }
        let Some(cg) = cgroup::parse_cgroup(&self.scratch) else {
            return Ok(Container::default());
        };
        let (keys, interner) = (&self.keys, &mut self.interner);
        let mut intern = |key: &Option<Str>, value: Option<&str>| {
            key.as_ref().and(value).map(|v| interner.intern(v))
        };
        let found = cg.container;
        let id = intern(&keys.container_id, found.map(|c| c.id));
        let runtime = intern(
            &keys.container_runtime,
            found.and_then(|c| c.runtime).map(cgroup::Runtime::name),
        );
        let pod_uid = intern(
            &keys.pod_uid,
            cg.pod_uid.as_ref().map(cgroup::PodUid::as_str),
        );
        let cgroup = keys
            .cgroup
            .as_ref()
            .map(|_| intern_lossy(interner, cg.line));
        Ok(Container {
            id,
            runtime,
            pod_uid,
            cgroup,
        })
    }
}

fn intern_lossy(interner: &mut Interner, bytes: &[u8]) -> Str {
    interner.intern(&String::from_utf8_lossy(bytes))
}

/// The numbers of a stat record the metrics use, copied out so the read
/// buffer can be reused for the next file.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Block I/O wait, when the wait point is on and the kernel writes it.
    blkio_ticks: Option<u64>,
    minflt: u64,
    majflt: u64,
    utime: u64,
    stime: u64,
    num_threads: u64,
    vsize: u64,
    rss: i64,
}

impl Sample {
    fn new(s: &Stat<'_>, with_wait: bool) -> Sample {
        Sample {
            blkio_ticks: if with_wait { s.blkio_ticks() } else { None },
            minflt: s.minflt,
            majflt: s.majflt,
            utime: s.utime,
            stime: s.stime,
            num_threads: s.num_threads,
            vsize: s.vsize,
            rss: s.rss,
        }
    }
}

/// What the optional files said about a process (`None`: disabled or unreadable).
#[derive(Debug, Clone, Copy, Default)]
struct Extras {
    io: Option<Io>,
    context_switches: Option<ContextSwitches>,
    signals_pending: Option<u64>,
    fds: Option<u64>,
    /// `Some(None)`: read, and unlimited.
    fd_limit: Option<Option<u64>>,
    rollup: Option<Rollup>,
}

/// The procfs receiver. See the module documentation for what it reads when.
pub struct ProcfsReceiver {
    proc_dir: Dir,
    /// Whether `<root>/proc` is a real procfs, where `st_size` of `PID/fd` is
    /// the descriptor count (Linux 6.2+); elsewhere the entries are counted.
    proc_is_procfs: bool,
    include_kernel_threads: bool,
    builder: MetricBuilder,
    common_attributes: Attributes,
    cache: ProcessCache,
    identities: IdentityReader,
    /// The read buffer for stat, io and status, reused for every file.
    buf: Vec<u8>,
    path: PidPath,
    pids: Vec<u32>,
    /// Processes of the current scrape per state slot (`system.process.count`).
    states: Vec<u64>,
    self_metrics: SelfMetrics,
    last: ScrapeStats,
}

impl ProcfsReceiver {
    /// Read the machine's constants (boot time from `<root>/proc/stat`,
    /// clock ticks, page size, CPU count) and the user table; fails if the
    /// configuration is invalid or `<root>/proc` cannot be read.
    pub fn new(config: &ProcfsConfig, registry: &Registry) -> anyhow::Result<Self> {
        let problems = config.validate();
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid procfs receiver config: {}",
                Problem::join(&problems)
            );
        }
        let proc_path = config.root_path.join("proc");
        let proc_dir = Dir::open(&proc_path)
            .with_context(|| format!("cannot open {}", proc_path.display()))?;
        let mut buf = Vec::with_capacity(4096);
        proc_dir
            .read_at(c"stat", &mut buf)
            .with_context(|| format!("cannot read {}/stat", proc_path.display()))?;
        let btime = parse::parse_boot_time(&buf)
            .with_context(|| format!("no boot time in {}/stat", proc_path.display()))?;
        let sysconf = |name, what| {
            phoenix_telemetry::sys::sysconf(name).with_context(|| format!("sysconf({what})"))
        };
        let machine = Machine {
            boot_time_unix_nano: btime.saturating_mul(1_000_000_000),
            clock_ticks: sysconf(libc::_SC_CLK_TCK, "_SC_CLK_TCK")?,
            page_size: sysconf(libc::_SC_PAGESIZE, "_SC_PAGESIZE")?,
            ncpus: sysconf(libc::_SC_NPROCESSORS_ONLN, "_SC_NPROCESSORS_ONLN")?,
        };
        let common_attributes = if config.attribute_enabled(semconv::HOST_NAME) {
            let host = match &config.host_name {
                Some(h) => h.clone(),
                None => sys::hostname().context("gethostname")?,
            };
            Attributes::new(vec![KeyValue::new(
                semconv::HOST_NAME.into(),
                Value::Str(host.into()),
            )])
        } else {
            Attributes::empty()
        };
        if config.cpu_wait_enabled() && config.metric_enabled(semconv::PROCESS_CPU_TIME) {
            let mut flag = Vec::new();
            // Absent on kernels before 5.14, where the boot parameter decides.
            if proc_dir
                .read_at(c"sys/kernel/task_delayacct", &mut flag)
                .is_ok()
                && flag.trim_ascii() == b"0"
            {
                tracing::warn!(
                    "process.cpu.time wait will read 0: the kernel's delay accounting is off \
                     (sysctl kernel.task_delayacct=1 turns it on)"
                );
            }
        }
        Ok(ProcfsReceiver {
            proc_is_procfs: proc_dir.is_procfs(),
            proc_dir,
            include_kernel_threads: config.include_kernel_threads,
            builder: MetricBuilder {
                descs: Descs::new(config),
                points: PointAttrs::new(config),
                machine,
                memory_percent: config.naming == Naming::Hostmetrics,
                mem_total: None,
            },
            common_attributes,
            cache: ProcessCache::default(),
            identities: IdentityReader {
                keys: AttrKeys::new(config),
                users: Users::load(&config.root_path.join("etc/passwd")),
                interner: Interner::new(),
                scratch: Vec::new(),
            },
            buf,
            path: PidPath::default(),
            pids: Vec::new(),
            states: Vec::new(),
            self_metrics: SelfMetrics::register(registry),
            last: ScrapeStats::default(),
        })
    }

    /// One pass over `/proc`. Never panics; failures are counted in
    /// [`Self::last_scrape`] and the self-metrics.
    pub fn scrape(&mut self) -> Batch {
        let started = Instant::now();
        let time_unix_nano = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut stats = ScrapeStats::default();
        self.cache.begin_scrape();
        self.states.clear();
        self.states.resize(self.builder.points.states.len(), 0);
        if self.builder.descs.memory_utilization.is_some() {
            self.builder.mem_total = self.read_host_file(c"meminfo", parse::parse_mem_total);
        }

        let mut pids = std::mem::take(&mut self.pids);
        if let Err(e) = self
            .proc_dir
            .list_pids(&mut self.identities.scratch, &mut pids)
        {
            // Once per scrape, not per process: /proc itself is unreadable.
            tracing::warn!(error = %e, "procfs receiver cannot list processes");
        }
        let mut resources = Vec::with_capacity(self.last.processes + 16);
        for &pid in &pids {
            if let Some(r) = self.scrape_process(pid, started, time_unix_nano, &mut stats) {
                resources.push(r);
            }
        }
        self.pids = pids;
        stats.processes = resources.len();
        if self.builder.descs.has_host_metrics() {
            let created = match self.builder.descs.process_created {
                Some(_) => self.read_host_file(c"stat", parse::parse_processes_created),
                None => None,
            };
            resources.push(self.builder.host(&self.states, created));
        }

        if self.cache.evict_unseen() > 0 {
            // Command lines of exited processes are held by nothing else now.
            self.identities.interner.purge_unused();
        }
        stats.duration = started.elapsed();
        self.self_metrics.record(&stats, self.cache.len());
        tracing::debug!(
            processes = stats.processes,
            vanished = stats.vanished,
            permission_denied = stats.permission_denied,
            parse_errors = stats.parse_errors,
            kernel_threads_skipped = stats.kernel_threads_skipped,
            duration_us = stats.duration.as_micros() as u64,
            "procfs scrape"
        );
        self.last = stats;
        Batch {
            time_unix_nano,
            common_attributes: self.common_attributes.clone(),
            resources,
        }
    }

    /// What the last [`Self::scrape`] saw.
    pub fn last_scrape(&self) -> ScrapeStats {
        self.last
    }

    /// A host-wide file of `/proc` (`meminfo`, `stat`), parsed; a failure
    /// is logged (once per scrape at most: one file) and leaves the metric out.
    fn read_host_file<T>(
        &mut self,
        name: &std::ffi::CStr,
        parse: impl Fn(&[u8]) -> Result<T, parse::ParseError>,
    ) -> Option<T> {
        let read = self.proc_dir.read_at(name, &mut self.buf);
        match read
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(parse(&self.buf)?))
        {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(file = ?name, error = %e, "procfs receiver cannot read a host file");
                None
            }
        }
    }

    fn scrape_process(
        &mut self,
        pid: u32,
        now: Instant,
        now_unix_nano: u64,
        stats: &mut ScrapeStats,
    ) -> Option<Resource> {
        // Split the borrows: the stat record stays borrowed from `buf` while
        // the identity is read through `identities` into `cache`.
        let ProcfsReceiver {
            proc_dir,
            proc_is_procfs,
            include_kernel_threads,
            builder,
            cache,
            identities,
            buf,
            path,
            states,
            ..
        } = self;

        path.set_pid(pid);
        if let Err(e) = proc_dir.read_at(path.file(c"stat"), buf) {
            stats.count(ReadError::classify(&e));
            return None;
        }
        let Ok(stat) = parse::parse_stat(buf) else {
            stats.parse_errors += 1;
            return None;
        };
        if let Some(count) = states.get_mut(builder.points.state_slot(stat.state)) {
            *count += 1;
        }
        if stat.is_kernel_thread() && !*include_kernel_threads {
            stats.kernel_threads_skipped += 1;
            return None;
        }

        let descs = &builder.descs;
        let process = cache.get_or_insert_with(pid, stat.starttime, || {
            let creation = builder.machine.creation_unix_nano(stat.starttime);
            let id = identities.read(proc_dir, path, &stat, creation, stats)?;
            Some(CachedProcess::new(
                stat.starttime,
                stat.comm,
                creation,
                id,
                &identities.keys,
            ))
        })?;
        // Read mid-exec, a process may show its new name with an empty
        // command line (the kernel switches the name before it lays out the
        // new arguments): a live user process without one is read again
        // until it has one, rather than keeping the empty one for good.
        let caught_mid_exec = process.identity.command.is_none()
            && identities.keys.needs_cmdline()
            && !stat.is_kernel_thread()
            && stat.state != b'Z';
        if *process.comm != *stat.comm || caught_mid_exec {
            // Same PID and start time but a new name: the process exec'd
            // (its command line and executable changed) or renamed itself.
            let creation = process.creation_unix_nano;
            let id = identities.read(proc_dir, path, &stat, creation, stats)?;
            process.reidentify(stat.comm, id, &identities.keys);
        } else if process.identity.ppid != stat.ppid {
            process.set_parent(stat.ppid, &identities.keys);
        }
        let sample = Sample::new(&stat, builder.points.cpu_wait.is_some());

        let mut extras = Extras::default();
        if descs.needs_io() {
            // Denied for another user's process when not root: emit the rest.
            let read = proc_dir.read_at(path.file(c"io"), buf);
            if optional(read, stats).ok()?.is_some() {
                extras.io = parsed(parse::parse_io(buf), stats);
            }
        }
        if descs.needs_status() {
            let read = proc_dir.read_at(path.file(c"status"), buf);
            if optional(read, stats).ok()?.is_some() {
                if descs.context_switches.is_some() {
                    extras.context_switches =
                        parsed(parse::parse_status_context_switches(buf), stats);
                }
                if descs.signals_pending.is_some() {
                    extras.signals_pending =
                        parsed(parse::parse_status_signals_pending(buf), stats);
                }
            }
        }
        if descs.fd_limit.is_some() {
            let read = proc_dir.read_at(path.file(c"limits"), buf);
            if optional(read, stats).ok()?.is_some() {
                extras.fd_limit = parsed(parse::parse_limits_nofile(buf), stats);
            }
        }
        if descs.needs_smaps_rollup() {
            // Walks every mapping of the process under its memory map lock:
            // the costly file (docs/BENCHMARKS.md), read only when asked for.
            let read = proc_dir.read_at(path.file(c"smaps_rollup"), buf);
            let read = absent_if_missing(proc_dir, path, read);
            if optional(read, stats).ok()?.flatten().is_some() {
                extras.rollup = parsed(parse::parse_smaps_rollup(buf), stats);
            }
        }
        if descs.fd_count.is_some() {
            let read = fd_count(proc_dir, *proc_is_procfs, path, &mut identities.scratch);
            extras.fds = optional(read, stats).ok()?;
        }

        let metrics = builder.build(process, &sample, &extras, now, now_unix_nano);
        Some(Resource {
            attributes: process.attributes.clone(),
            metrics,
            identity: Some(process.key),
        })
    }
}

/// The process exited while it was being read.
struct Gone;

/// The outcome of reading a file that only some metrics or attributes need:
/// a failure is counted and leaves the process emitted without what the
/// file feeds, except that the process having exited is `Err(Gone)`.
fn optional<T>(read: std::io::Result<T>, stats: &mut ScrapeStats) -> Result<Option<T>, Gone> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(e) => match ReadError::classify(&e) {
            ReadError::Vanished => {
                stats.vanished += 1;
                Err(Gone)
            }
            other => {
                stats.count(other);
                Ok(None)
            }
        },
    }
}

/// A read of a file some kernels or processes lack: ENOENT while the
/// process's directory is still there means the file is absent (a kernel
/// without it, a fixture tree, `smaps_rollup` of some processes), not that
/// the process exited.
fn absent_if_missing<T>(
    dir: &Dir,
    path: &mut PidPath,
    read: std::io::Result<T>,
) -> std::io::Result<Option<T>> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && dir.stat_at(path.file(c"")).is_ok() => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A parse result, with a failure counted.
fn parsed<T>(result: Result<T, parse::ParseError>, stats: &mut ScrapeStats) -> Option<T> {
    result.map_err(|_| stats.parse_errors += 1).ok()
}

/// Open descriptors of the process `path` points at: `st_size` of its `fd`
/// directory where procfs reports the count there (Linux 6.2+: one `fstatat`),
/// else one entry per descriptor, counted.
fn fd_count(
    dir: &Dir,
    proc_is_procfs: bool,
    path: &mut PidPath,
    scratch: &mut Vec<u8>,
) -> std::io::Result<u64> {
    if proc_is_procfs {
        let st = dir.stat_at(path.file(c"fd"))?;
        if st.size > 0 {
            return Ok(st.size);
        }
    }
    dir.count_entries_at(path.file(c"fd"), scratch)
}

/// What turns a process's numbers into metrics, built once from the config.
struct MetricBuilder {
    descs: Descs,
    points: PointAttrs,
    machine: Machine,
    /// `process.memory.utilization` as 0-100, as the Collector reports it.
    memory_percent: bool,
    /// The host's memory, read each scrape while memory utilization is on.
    mem_total: Option<u64>,
}

impl MetricBuilder {
    /// The metrics of one process, in [`metrics::METRICS`] order.
    fn build(
        &self,
        process: &mut CachedProcess,
        s: &Sample,
        extras: &Extras,
        now: Instant,
        now_unix_nano: u64,
    ) -> Vec<Metric> {
        let MetricBuilder {
            descs,
            points,
            machine,
            memory_percent,
            mem_total,
        } = self;
        let start = process.creation_unix_nano;
        let mut out = Vec::with_capacity(descs.enabled_count());
        let point = |attributes: &Attributes, start_time_unix_nano, value| Point {
            attributes: attributes.clone(),
            start_time_unix_nano,
            value,
        };
        let mut push = |desc: &Option<Arc<MetricDesc>>, pts: SmallVec<[Point; 2]>| {
            if let Some(desc) = desc {
                out.push(Metric {
                    desc: desc.clone(),
                    points: pts,
                });
            }
        };

        // The wait point, where it is on and the kernel gives it.
        let wait = points.cpu_wait.as_ref().zip(s.blkio_ticks);
        if descs.cpu_time.is_some() {
            let mut pts: SmallVec<[Point; 2]> = smallvec![
                point(
                    &points.cpu_user,
                    start,
                    Number::Double(machine.seconds(s.utime))
                ),
                point(
                    &points.cpu_system,
                    start,
                    Number::Double(machine.seconds(s.stime))
                ),
            ];
            if let Some((attrs, ticks)) = wait {
                pts.push(point(attrs, start, Number::Double(machine.seconds(ticks))));
            }
            push(&descs.cpu_time, pts);
        }
        let cpu_now = CpuSample {
            utime: s.utime,
            stime: s.stime,
            blkio: s.blkio_ticks.unwrap_or(0),
            at: now,
        };
        if descs.cpu_utilization.is_some()
            && let Some(prev) = process.prev_cpu
        {
            let elapsed = now.saturating_duration_since(prev.at).as_secs_f64();
            if elapsed > 0.0 {
                let capacity = elapsed * machine.ncpus as f64;
                let share = |ticks: u64| Number::Double(machine.seconds(ticks) / capacity);
                let mut pts: SmallVec<[Point; 2]> = smallvec![
                    point(
                        &points.cpu_user,
                        0,
                        share(s.utime.saturating_sub(prev.utime))
                    ),
                    point(
                        &points.cpu_system,
                        0,
                        share(s.stime.saturating_sub(prev.stime))
                    ),
                ];
                if let Some((attrs, ticks)) = wait {
                    pts.push(point(attrs, 0, share(ticks.saturating_sub(prev.blkio))));
                }
                push(&descs.cpu_utilization, pts);
            }
        }
        process.prev_cpu = Some(cpu_now);

        let none = &points.none;
        let rss_bytes = u64::try_from(s.rss)
            .unwrap_or(0)
            .saturating_mul(machine.page_size);
        if descs.memory_usage.is_some() {
            push(
                &descs.memory_usage,
                smallvec![point(none, start, int(rss_bytes))],
            );
        }
        if descs.memory_virtual.is_some() {
            push(
                &descs.memory_virtual,
                smallvec![point(none, start, int(s.vsize))],
            );
        }
        if descs.memory_utilization.is_some()
            && let Some(total) = mem_total.filter(|&t| t > 0)
        {
            let scale = if *memory_percent { 100.0 } else { 1.0 };
            let share = rss_bytes as f64 / total as f64 * scale;
            push(
                &descs.memory_utilization,
                smallvec![point(none, 0, Number::Double(share))],
            );
        }
        if let Some(io) = extras.io {
            push(
                &descs.disk_io,
                smallvec![
                    point(&points.io_read, start, int(io.read_bytes)),
                    point(&points.io_write, start, int(io.write_bytes)),
                ],
            );
            if let (Some(reads), Some(writes)) = (io.read_ops, io.write_ops) {
                push(
                    &descs.disk_operations,
                    smallvec![
                        point(&points.io_read, start, int(reads)),
                        point(&points.io_write, start, int(writes)),
                    ],
                );
            }
        }
        if descs.thread_count.is_some() {
            push(
                &descs.thread_count,
                smallvec![point(none, start, int(s.num_threads))],
            );
        }
        if let Some(fds) = extras.fds {
            push(&descs.fd_count, smallvec![point(none, start, int(fds))]);
        }
        if let Some(Some(limit)) = extras.fd_limit {
            push(&descs.fd_limit, smallvec![point(none, start, int(limit))]);
        }
        if let Some(cs) = extras.context_switches {
            push(
                &descs.context_switches,
                smallvec![
                    point(&points.ctx_voluntary, start, int(cs.voluntary)),
                    point(&points.ctx_involuntary, start, int(cs.involuntary)),
                ],
            );
        }
        if descs.paging_faults.is_some() {
            push(
                &descs.paging_faults,
                smallvec![
                    point(&points.fault_major, start, int(s.majflt)),
                    point(&points.fault_minor, start, int(s.minflt)),
                ],
            );
        }
        if let Some(pending) = extras.signals_pending {
            push(
                &descs.signals_pending,
                smallvec![point(none, start, int(pending))],
            );
        }
        if let Some(rollup) = extras.rollup {
            push(
                &descs.memory_pss,
                smallvec![point(none, start, int(rollup.pss))],
            );
            push(
                &descs.memory_uss,
                smallvec![point(none, start, int(rollup.uss))],
            );
            push(
                &descs.memory_swap,
                smallvec![point(none, start, int(rollup.swap))],
            );
        }
        if descs.uptime.is_some() {
            let uptime = now_unix_nano.saturating_sub(start) as f64 / 1e9;
            push(
                &descs.uptime,
                smallvec![point(none, 0, Number::Double(uptime))],
            );
        }
        out
    }
}

impl MetricBuilder {
    /// The host's resource: processes per state (every state the naming
    /// has, zeros too, so the series do not come and go) and processes
    /// created since boot. No attributes of its own (`host.name` is common)
    /// and no process identity: the pipeline runs it past the processors.
    fn host(&self, states: &[u64], created: Option<u64>) -> Resource {
        let boot = self.machine.boot_time_unix_nano;
        let mut metrics = Vec::with_capacity(2);
        if let Some(desc) = &self.descs.process_count {
            metrics.push(Metric {
                desc: desc.clone(),
                points: self
                    .points
                    .states
                    .iter()
                    .zip(states)
                    .map(|(attributes, &n)| Point {
                        attributes: attributes.clone(),
                        start_time_unix_nano: boot,
                        value: int(n),
                    })
                    .collect(),
            });
        }
        if let (Some(desc), Some(created)) = (&self.descs.process_created, created) {
            metrics.push(Metric {
                desc: desc.clone(),
                points: smallvec![Point {
                    attributes: self.points.none.clone(),
                    start_time_unix_nano: boot,
                    value: int(created),
                }],
            });
        }
        Resource {
            attributes: Attributes::empty(),
            metrics,
            identity: None,
        }
    }
}

/// A counter value as an OTLP integer (saturating: i64 is OTLP's type).
fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_is_send() {
        // The pipeline runtime moves the receiver into its scrape task.
        fn assert_send<T: Send>() {}
        assert_send::<ProcfsReceiver>();
    }

    #[test]
    fn creation_time_does_not_overflow_on_long_uptimes() {
        let m = Machine {
            boot_time_unix_nano: 1_700_000_000_000_000_000,
            clock_ticks: 100,
            page_size: 4096,
            ncpus: 2,
        };
        assert_eq!(m.creation_unix_nano(250), 1_700_000_002_500_000_000);
        // Ten years of uptime in ticks: ticks × 10⁹ would overflow a u64.
        let ten_years = 10 * 365 * 86_400 * 100;
        assert_eq!(
            m.creation_unix_nano(ten_years),
            1_700_000_000_000_000_000 + 10 * 365 * 86_400 * 1_000_000_000
        );
        assert_eq!(m.creation_unix_nano(u64::MAX), u64::MAX);
    }

    #[test]
    fn new_fails_cleanly_without_proc() {
        let config = ProcfsConfig {
            root_path: "/nonexistent/phoenix-root".into(),
            ..ProcfsConfig::default()
        };
        let err = ProcfsReceiver::new(&config, &Registry::new())
            .err()
            .expect("no /proc there");
        assert!(
            err.to_string().contains("/nonexistent/phoenix-root/proc"),
            "{err:#}"
        );
        let invalid = ProcfsConfig {
            collection_interval: Duration::ZERO,
            ..ProcfsConfig::default()
        };
        let err = ProcfsReceiver::new(&invalid, &Registry::new())
            .err()
            .expect("invalid config");
        assert!(err.to_string().contains("collection_interval"), "{err:#}");
    }
}
