//! A synthetic `/proc`: a directory tree laid out and formatted exactly as
//! the kernel's, for N processes (10,000 and 100,000 are practical), that
//! the procfs receiver reads through its `root_path` like a real host.
//!
//! It serves two purposes a real machine cannot: tests that know every
//! value the receiver should report (the tree keeps its ground truth, see
//! [`SyntheticTree::processes`]), and benchmarks at populations no test
//! machine runs. Everything is deterministic from the seed.
//!
//! [`SyntheticTree::advance`] moves the simulated clock one tick: CPU time,
//! I/O, page faults and context switches grow, memory and thread counts
//! drift, some processes exit (their directory goes), others start (new,
//! increasing PIDs; now and then a freed PID is reused with a new start
//! time), and a parent that exits has its children re-parented to PID 1.
//!
//! ```text
//! <root>/.phoenix-synth           marker: the tree may be regenerated here
//! <root>/etc/passwd               users, for process.owner
//! <root>/proc/stat                btime (creation times), cpu, ctxt, processes
//! <root>/proc/uptime, meminfo, loadavg, ...
//! <root>/proc/<pid>/stat          proc_pid_stat(5), 52 fields
//! <root>/proc/<pid>/status        proc_pid_status(5), every line of Linux 6.x
//! <root>/proc/<pid>/io            rchar .. cancelled_write_bytes
//! <root>/proc/<pid>/cmdline       NUL-separated argv (or a setproctitle title)
//! <root>/proc/<pid>/comm
//! <root>/proc/<pid>/cgroup        container-shaped for containerised kinds (`cgroup.rs`)
//! <root>/proc/<pid>/exe           symlink to the executable (dangling)
//! <root>/proc/<pid>/fd/<n>        symlinks: /dev/null, pipe:[..], socket:[..]
//! ```
//!
//! The directory of a process is owned by the simulated user when the
//! generator runs as root (the receiver takes `process.owner` from it, as on
//! the real procfs); otherwise every process is owned by the current user.

mod catalog;
mod cgroup;
mod fsio;
mod render;
pub mod rng;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use catalog::{KINDS, Parent};
use fsio::{Digits, ProcDir};
use render::{Machine, SystemTotals};
use rng::Rng;

pub use cgroup::SynthContainer;
pub use render::PF_KTHREAD;

/// The file that marks a directory as a synthetic tree, so that it (and
/// only it) may be removed and regenerated.
pub const MARKER: &str = ".phoenix-synth";

/// The highest PID Linux hands out (`PID_MAX_LIMIT` on 64-bit); PIDs wrap
/// to [`PID_WRAP_TO`] after it, as the kernel's do.
const PID_MAX: u32 = 4_194_304;
const PID_WRAP_TO: u32 = 300;
/// At most this many processes: beyond it PIDs (one per thread, as in the
/// kernel) would run out.
pub const MAX_PROCESSES: usize = 1_000_000;
/// Probability per tick that a short-lived tool (sh, curl, grep) ends.
const SHORT_DEATH: f64 = 0.6;

/// How to generate a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// User-space processes (PID 1 included); kept constant across ticks.
    pub processes: usize,
    /// Kernel threads on top (`kthreadd` as PID 2, then workers), which the
    /// receiver skips by default.
    pub kernel_threads: usize,
    pub seed: u64,
    /// `btime` in `/proc/stat`, seconds since the epoch.
    pub boot_time: u64,
    /// How long the simulated host has been up when the tree is created.
    pub uptime: Duration,
    /// Simulated time per [`SyntheticTree::advance`].
    pub tick: Duration,
    /// Probability per tick that a long-lived process exits.
    pub death_rate: f64,
    /// Probability that a new process gets a freed PID instead of the next one.
    pub pid_reuse: f64,
    /// At most this many `fd/` entries per process: the file count of a
    /// 100,000-process tree is dominated by them.
    pub max_fds: u32,
    /// Replace files by write-and-rename, so that a reader running at the
    /// same time (an agent scraping a live tree) never sees a torn file.
    /// Costs one rename per file; off for trees scraped between ticks.
    pub atomic: bool,
    /// chown process directories to the simulated users (only as root).
    pub set_owners: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            processes: 10_000,
            kernel_threads: 0,
            seed: 1,
            // 2026-01-01T00:00:00Z: fixed, so that output is reproducible.
            boot_time: 1_767_225_600,
            uptime: Duration::from_secs(30 * 86_400),
            tick: Duration::from_secs(10),
            death_rate: 0.002,
            pid_reuse: 0.01,
            max_fds: 16,
            atomic: false,
            set_owners: true,
        }
    }
}

impl SynthConfig {
    /// Every problem with the configuration, as sentences.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.processes == 0 || self.processes > MAX_PROCESSES {
            problems.push(format!(
                "processes must be between 1 and {MAX_PROCESSES}, not {}",
                self.processes
            ));
        }
        if self.kernel_threads > 100_000 {
            problems.push(format!(
                "kernel_threads must be at most 100000, not {}",
                self.kernel_threads
            ));
        }
        if self.tick.is_zero() {
            problems.push("tick must be longer than 0".into());
        }
        for (name, p) in [
            ("death_rate", self.death_rate),
            ("pid_reuse", self.pid_reuse),
        ] {
            if !(0.0..=1.0).contains(&p) {
                problems.push(format!("{name} must be between 0 and 1, not {p}"));
            }
        }
        if self.max_fds > 4096 {
            problems.push(format!(
                "max_fds must be at most 4096, not {}",
                self.max_fds
            ));
        }
        problems
    }
}

/// One synthetic process: exactly what its files say.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthProcess {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    /// As in stat and comm: at most 15 bytes.
    pub comm: String,
    /// Target of the `exe` link; `None` for kernel threads (no link).
    pub exe: Option<String>,
    /// The `cmdline` file's bytes.
    pub cmdline: Vec<u8>,
    /// Owner of the process directory, and the uid in `status`.
    pub uid: u32,
    pub kernel_thread: bool,
    /// One-letter state (`S`, `R`, `I`).
    pub state: u8,
    /// Clock ticks after boot.
    pub starttime: u64,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub num_threads: u64,
    /// Bytes.
    pub vsize: u64,
    pub vsize_peak: u64,
    /// Pages.
    pub rss_pages: u64,
    pub rss_peak_pages: u64,
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
    pub voluntary_ctxt_switches: u64,
    pub nonvoluntary_ctxt_switches: u64,
    /// Entries in `fd/`.
    pub fds: u32,
    pub processor: u32,
    pub sigcatch: u64,
    pub blkio_ticks: u64,
    /// Index into the catalog (`usize::MAX` for kernel threads).
    kind: usize,
    /// The container it runs in, for the kinds that run under a shim.
    slot: Option<cgroup::Slot>,
    /// Cores used while active.
    cpu_rate: f64,
    /// Disk bytes per second while active.
    io_rate: f64,
    vsize_base: u64,
    /// Living processes whose parent this is.
    children: u32,
    /// The tick it was born in (it is not updated in that tick again).
    born_tick: u64,
    /// Must be rewritten this tick (re-parented).
    dirty: bool,
}

impl SynthProcess {
    /// What the receiver reports as `process.executable.name`: the exe
    /// link's file name, or comm when there is no link.
    pub fn executable_name(&self) -> &str {
        match &self.exe {
            Some(path) => path.rsplit('/').next().unwrap_or(path),
            None => &self.comm,
        }
    }

    /// The arguments of `cmdline` (a final NUL ends the last one).
    pub fn args(&self) -> Vec<String> {
        let body = self.cmdline.strip_suffix(b"\0").unwrap_or(&self.cmdline);
        if body.is_empty() {
            return Vec::new();
        }
        body.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// `process.command`: the first argument.
    pub fn command(&self) -> Option<String> {
        self.args().into_iter().next()
    }

    /// `process.command_line`: the arguments joined by spaces.
    pub fn command_line(&self) -> Option<String> {
        let args = self.args();
        (!args.is_empty()).then(|| args.join(" "))
    }

    /// The container the receiver should find in its cgroup file.
    pub fn container(&self) -> Option<SynthContainer> {
        self.slot.map(cgroup::Slot::truth)
    }

    /// Resident memory in bytes for a page size.
    pub fn rss_bytes(&self, page_size: u64) -> u64 {
        self.rss_pages * page_size
    }
}

/// What one [`SyntheticTree::advance`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// PIDs of new processes (those in `reused` included).
    pub born: Vec<u32>,
    /// PIDs whose directory was removed.
    pub died: Vec<u32>,
    /// PIDs handed out again (to a new process with a new start time).
    pub reused: Vec<u32>,
    /// PIDs whose parent exited; their ppid is now 1.
    pub reparented: Vec<u32>,
    /// Processes whose files were rewritten (new ones excluded).
    pub updated: usize,
}

/// A generated tree on disk and its ground truth in memory.
pub struct SyntheticTree {
    root: PathBuf,
    config: SynthConfig,
    rng: Rng,
    dir: ProcDir,
    procs: Vec<SynthProcess>,
    index: HashMap<u32, usize>,
    /// PIDs of each kind, possibly stale (checked when used).
    by_kind: Vec<Vec<u32>>,
    /// The master process of each `Parent::Master` kind.
    masters: Vec<Option<u32>>,
    instances: Vec<u64>,
    cumulative: Vec<u64>,
    free_pids: Vec<u32>,
    next_pid: u32,
    forks: u64,
    kernel_threads: usize,
    now: u64,
    ticks: u64,
    hz: u64,
    page_size: u64,
    ncpus: u64,
    machine: Machine,
    /// uid of every process when owners cannot be set.
    fixed_uid: Option<u32>,
    buf: Vec<u8>,
    path: Vec<u8>,
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    phoenix_telemetry::sys::sysconf(name).unwrap_or(fallback)
}

impl SyntheticTree {
    /// Generate a tree under `root` (which must not exist, be empty, or hold
    /// an earlier synthetic tree, which is replaced).
    pub fn create(root: &Path, config: SynthConfig) -> io::Result<SyntheticTree> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                problems.join("; "),
            ));
        }
        prepare_root(root, &config)?;
        let proc_path = root.join("proc");
        std::fs::create_dir_all(&proc_path)?;
        std::fs::create_dir_all(root.join("etc"))?;

        let hz = sysconf(libc::_SC_CLK_TCK, 100);
        let page_size = sysconf(libc::_SC_PAGESIZE, 4096);
        // The simulated host has the CPUs its population needs (a node
        // running 100,000 processes is not a laptop), so that the machine
        // totals in /proc/stat stay plausible: at least this machine's.
        let ncpus = sysconf(libc::_SC_NPROCESSORS_ONLN, 1)
            .max(config.processes.div_ceil(64) as u64)
            .min(1024);
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let fixed_uid = (!(config.set_owners && euid == 0)).then_some(euid);

        let uptime_ticks = u64::try_from(config.uptime.as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_mul(hz)
            / 1000;
        let mut tree = SyntheticTree {
            root: root.to_path_buf(),
            rng: Rng::new(config.seed),
            dir: ProcDir::open(&proc_path)?,
            procs: Vec::with_capacity(config.processes + config.kernel_threads),
            index: HashMap::with_capacity(config.processes + config.kernel_threads),
            by_kind: vec![Vec::new(); KINDS.len()],
            masters: vec![None; KINDS.len()],
            instances: vec![0; KINDS.len()],
            cumulative: catalog::cumulative_weights(),
            free_pids: Vec::new(),
            next_pid: 1,
            forks: 0,
            kernel_threads: 0,
            // At least ten minutes, so that boot-time daemons (the first
            // two minutes) and everything started later fit.
            now: uptime_ticks.max(600 * hz),
            ticks: 0,
            hz,
            page_size,
            ncpus,
            machine: Machine::new(page_size, ncpus),
            fixed_uid,
            buf: Vec::with_capacity(4096),
            path: Vec::with_capacity(32),
            config,
        };
        tree.write_passwd(euid)?;
        tree.populate()?;
        tree.write_system_files(true)?;
        Ok(tree)
    }

    /// The directory given to [`Self::create`]: the receiver's `root_path`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// Every process, kernel threads included, in no particular order.
    pub fn processes(&self) -> &[SynthProcess] {
        &self.procs
    }

    pub fn process(&self, pid: u32) -> Option<&SynthProcess> {
        self.index.get(&pid).map(|&i| &self.procs[i])
    }

    /// `btime`, seconds since the epoch.
    pub fn boot_time(&self) -> u64 {
        self.config.boot_time
    }

    /// Clock ticks per second used for `utime`, `stime` and `starttime`
    /// (`sysconf(_SC_CLK_TCK)`, as the receiver divides by).
    pub fn clock_ticks(&self) -> u64 {
        self.hz
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Simulated uptime, in clock ticks.
    pub fn uptime_ticks(&self) -> u64 {
        self.now
    }

    /// Ticks advanced so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Kernel threads in the tree.
    pub fn kernel_threads(&self) -> usize {
        self.kernel_threads
    }

    fn tick_ticks(&self) -> u64 {
        let ms = u64::try_from(self.config.tick.as_millis()).unwrap_or(u64::MAX / 2);
        (ms.saturating_mul(self.hz) / 1000).max(1)
    }

    fn write_passwd(&mut self, euid: u32) -> io::Result<()> {
        let mut text = String::new();
        for &(name, uid) in catalog::USERS {
            let (home, shell) = match name {
                "root" => ("/root", "/bin/bash"),
                "app" | "deploy" => ("/home/app", "/bin/bash"),
                _ => ("/nonexistent", "/usr/sbin/nologin"),
            };
            text.push_str(&format!("{name}:x:{uid}:{uid}:{name}:{home}:{shell}\n"));
        }
        if self.fixed_uid.is_some() && !catalog::USERS.iter().any(|&(_, u)| u == euid) {
            text.push_str(&format!(
                "phoenix-synth:x:{euid}:{euid}:synthetic tree owner:/nonexistent:/usr/sbin/nologin\n"
            ));
        }
        std::fs::write(self.root.join("etc/passwd"), text)
    }

    /// The initial population: PID 1, kernel threads, one-per-host daemons,
    /// then the weighted mix, PIDs increasing with start time.
    fn populate(&mut self) -> io::Result<()> {
        let n = self.config.processes;
        let singletons: Vec<usize> = (0..KINDS.len())
            .filter(|&k| KINDS[k].weight == 0)
            .take(n)
            .collect();
        let boot_span = 30 * self.hz;
        let tick = self.tick_ticks();

        // PID 1 first, then kernel threads, whose PIDs come right after it.
        let mut plan: Vec<(usize, u64)> = Vec::with_capacity(n);
        if let Some(&init) = singletons.first() {
            plan.push((init, self.rng.range(1, 20)));
        }
        self.next_pid = 2;
        for i in 0..self.config.kernel_threads {
            let starttime = if i == 0 {
                0
            } else {
                self.rng.range(0, boot_span)
            };
            let p = self.kernel_thread(i, starttime);
            self.insert(p);
        }
        for &k in singletons.iter().skip(1) {
            plan.push((k, self.rng.range(boot_span, 4 * boot_span)));
        }
        let mut rest: Vec<(usize, u64)> = (singletons.len()..n)
            .map(|_| {
                let k = self.rng.weighted(&self.cumulative);
                let starttime = if KINDS[k].short {
                    self.now - self.rng.below(tick.min(self.now))
                } else {
                    self.rng.range(4 * boot_span, self.now)
                };
                (k, starttime)
            })
            .collect();
        rest.sort_by_key(|&(_, s)| s);
        plan.extend(rest);

        for (k, starttime) in plan {
            let pid = if KINDS[k].comm == "systemd" {
                1
            } else {
                self.take_pid(KINDS[k].threads.1)
            };
            let p = self.user_process(k, pid, starttime);
            self.insert(p);
        }
        // Write after the whole population exists: parents' child counts
        // are final, and the files are written in one sweep.
        let mut buf = std::mem::take(&mut self.buf);
        for i in 0..self.procs.len() {
            let name = Digits::new(u64::from(self.procs[i].pid));
            self.write_process(name.as_bytes(), i, &mut buf)?;
        }
        self.buf = buf;
        Ok(())
    }

    /// The next free PID, skipping `threads` numbers after it the way a
    /// multi-threaded process's thread IDs use up the PID space.
    fn take_pid(&mut self, threads: u32) -> u32 {
        loop {
            let pid = self.next_pid;
            let step = 1 + self.rng.below(u64::from(threads.min(8)) + 2) as u32;
            self.next_pid = pid.saturating_add(step);
            if self.next_pid > PID_MAX {
                self.next_pid = PID_WRAP_TO;
            }
            self.forks += 1;
            if pid >= 2 && !self.index.contains_key(&pid) {
                return pid;
            }
        }
    }

    fn kernel_thread(&mut self, i: usize, starttime: u64) -> SynthProcess {
        let (comm, ppid) = if i == 0 {
            ("kthreadd".to_string(), 0)
        } else {
            let t = catalog::KERNEL_THREADS[(i - 1) % catalog::KERNEL_THREADS.len()];
            let cpu = (i as u64) % self.ncpus;
            let mut name = Vec::new();
            catalog::expand(t, (i as u64 / self.ncpus) % 8, cpu, &mut name);
            name.truncate(15);
            (String::from_utf8_lossy(&name).into_owned(), 2)
        };
        let pid = self.take_pid(1);
        let age_s = (self.now - starttime) / self.hz;
        let stime = self.rng.below(age_s / 50 + 1);
        SynthProcess {
            pid,
            ppid,
            pgrp: 0,
            state: if comm.starts_with("kworker") {
                b'I'
            } else {
                b'S'
            },
            comm,
            exe: None,
            cmdline: Vec::new(),
            uid: 0,
            kernel_thread: true,
            starttime,
            utime: 0,
            stime,
            minflt: 0,
            majflt: 0,
            num_threads: 1,
            vsize: 0,
            vsize_peak: 0,
            rss_pages: 0,
            rss_peak_pages: 0,
            rchar: 0,
            wchar: 0,
            syscr: 0,
            syscw: 0,
            read_bytes: 0,
            write_bytes: 0,
            cancelled_write_bytes: 0,
            voluntary_ctxt_switches: self.rng.below(age_s * 4 + 10),
            nonvoluntary_ctxt_switches: self.rng.below(age_s / 10 + 2),
            fds: 0,
            processor: self.rng.below(self.ncpus) as u32,
            sigcatch: 0,
            blkio_ticks: 0,
            kind: usize::MAX,
            slot: None,
            cpu_rate: 0.0,
            io_rate: 0.0,
            vsize_base: 0,
            children: 0,
            born_tick: self.ticks,
            dirty: false,
        }
    }

    /// A new process of kind `k` with everything it has accumulated by now
    /// since `starttime`; parent chosen by the kind's rule among the living.
    fn user_process(&mut self, k: usize, pid: u32, starttime: u64) -> SynthProcess {
        let kind = &KINDS[k];
        let r = &mut self.rng;
        self.instances[k] += 1;
        let instance = self.instances[k];
        let mut comm = kind.comm.as_bytes().to_vec();
        comm.truncate(15);
        let mut cmdline = Vec::with_capacity(96);
        for arg in kind.args {
            catalog::expand(arg, instance, 0, &mut cmdline);
            cmdline.push(0);
        }

        let threads = r.range(u64::from(kind.threads.0), u64::from(kind.threads.1));
        let mib = 1u64 << 20;
        let rss_bytes = (r.log_uniform(kind.rss_mib.0, kind.rss_mib.1) * mib as f64) as u64;
        let rss_pages = (rss_bytes / self.page_size).max(1);
        let vsize_base = (rss_bytes * r.range(2, 10)).next_multiple_of(self.page_size) + 8 * mib;
        let vsize = vsize_base + threads * 8 * mib;
        let cpu_rate = if kind.cpu > 0.0 {
            r.log_uniform(kind.cpu / 10.0, kind.cpu)
        } else {
            0.0
        };
        let io_rate = if kind.io > 0.0 {
            r.log_uniform(kind.io / 10.0, kind.io)
        } else {
            0.0
        };

        // What it has accumulated since it started.
        let age_s = (self.now.saturating_sub(starttime)) as f64 / self.hz as f64;
        let active_s = age_s * kind.active;
        let cpu_ticks = (cpu_rate * active_s * self.hz as f64 * (0.5 + r.unit())) as u64 + 1;
        let user_share = 0.6 + 0.3 * r.unit();
        let utime = (cpu_ticks as f64 * user_share) as u64;
        let stime = cpu_ticks - utime;
        let io_bytes = io_rate * active_s;
        let read_bytes = ((io_bytes * 0.3) as u64).next_multiple_of(4096);
        let write_bytes = ((io_bytes * 0.7) as u64).next_multiple_of(4096);
        let rchar = read_bytes + (active_s * r.range(100, 5_000) as f64) as u64 + 832;
        let wchar = write_bytes + (active_s * r.range(10, 2_000) as f64) as u64;
        let voluntary = (active_s * r.range(1, 50) as f64) as u64 + threads;
        let fds =
            (r.range(u64::from(kind.fds.0), u64::from(kind.fds.1)) as u32).min(self.config.max_fds);
        let sigcatch = [0u64, 0x4a07, 0x1_8001_4a07, 0x1_0000_4a03][r.below(4) as usize];
        let processor = r.below(self.ncpus) as u32;
        let state = if cpu_rate > 0.02 && r.chance(0.1) {
            b'R'
        } else {
            b'S'
        };
        let minflt = rss_pages * r.range(2, 6) + (active_s * r.range(0, 20) as f64) as u64;
        let majflt = r.below(300);
        let syscr = rchar / r.range(500, 4_000) + 1;
        let syscw = wchar / r.range(500, 4_000);
        let nonvoluntary = voluntary / r.range(10, 100);
        let cancelled_write_bytes = if r.chance(0.05) {
            write_bytes / 100 / 4096 * 4096
        } else {
            0
        };
        let blkio_ticks = (io_bytes / 50_000_000.0) as u64;

        let uid = self.fixed_uid.unwrap_or_else(|| catalog::uid_of(kind.user));
        // From a hash rather than the generator, so that adding containers
        // left every other value of a seed's tree as it was.
        let slot = (kind.parent == Parent::Kind("containerd-shim")).then(|| {
            let h =
                phoenix_processors::hash::mix64(self.config.seed ^ u64::from(pid) << 24 ^ instance);
            let pods = (self.config.processes as u64 / 16).max(1);
            cgroup::Slot {
                pod: (h % pods) as u32,
                container: ((h >> 32) % cgroup::CONTAINERS_PER_POD) as u8,
            }
        });
        let ppid = self.choose_parent(k, pid);
        let pgrp = if kind.parent == Parent::Master && ppid != 1 {
            ppid
        } else {
            pid
        };
        SynthProcess {
            pid,
            ppid,
            pgrp,
            comm: String::from_utf8_lossy(&comm).into_owned(),
            exe: Some(kind.exe.to_string()),
            cmdline,
            uid,
            kernel_thread: false,
            state,
            starttime,
            utime,
            stime,
            minflt,
            majflt,
            num_threads: threads,
            vsize,
            vsize_peak: vsize,
            rss_pages,
            rss_peak_pages: rss_pages,
            rchar,
            wchar,
            syscr,
            syscw,
            read_bytes,
            write_bytes,
            cancelled_write_bytes,
            voluntary_ctxt_switches: voluntary,
            nonvoluntary_ctxt_switches: nonvoluntary,
            fds,
            processor,
            sigcatch,
            blkio_ticks,
            kind: k,
            slot,
            cpu_rate,
            io_rate,
            vsize_base,
            children: 0,
            born_tick: self.ticks,
            dirty: false,
        }
    }

    /// The parent of a new process of kind `k`, by the kind's rule; PID 1
    /// when there is no such living process.
    fn choose_parent(&mut self, k: usize, pid: u32) -> u32 {
        if pid == 1 {
            return 0;
        }
        match KINDS[k].parent {
            Parent::Init => 1,
            Parent::Master => match self.masters[k] {
                Some(master) if self.index.contains_key(&master) => master,
                _ => {
                    // The first of its kind, or the master exited: this one leads.
                    self.masters[k] = Some(pid);
                    1
                }
            },
            Parent::Kind(comm) => {
                let Some(pk) = catalog::index_of(comm) else {
                    return 1;
                };
                // Stale entries (exited processes) are dropped as they are met.
                while !self.by_kind[pk].is_empty() {
                    let i = self.rng.below(self.by_kind[pk].len() as u64) as usize;
                    let candidate = self.by_kind[pk][i];
                    match self.index.get(&candidate) {
                        Some(&at) if self.procs[at].kind == pk => return candidate,
                        _ => {
                            self.by_kind[pk].swap_remove(i);
                        }
                    }
                }
                1
            }
        }
    }

    /// Add a process to the in-memory state (its files are written separately).
    fn insert(&mut self, p: SynthProcess) {
        if p.kernel_thread {
            self.kernel_threads += 1;
        }
        if let Some(&parent) = self.index.get(&p.ppid) {
            self.procs[parent].children += 1;
        }
        if p.kind != usize::MAX {
            self.by_kind[p.kind].push(p.pid);
        }
        self.index.insert(p.pid, self.procs.len());
        self.procs.push(p);
    }

    /// Write every file of process `i` into the directory `name` under proc.
    fn write_process(&mut self, name: &[u8], i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let p = &self.procs[i];
        self.dir.mkdir(&[name])?;
        render::stat(buf, p);
        self.dir.write(&[name, b"stat"], buf)?;
        render::status(buf, p, &self.machine);
        self.dir.write(&[name, b"status"], buf)?;
        render::io(buf, p);
        self.dir.write(&[name, b"io"], buf)?;
        self.dir.write(&[name, b"cmdline"], &p.cmdline)?;
        buf.clear();
        buf.extend_from_slice(p.comm.as_bytes());
        buf.push(b'\n');
        self.dir.write(&[name, b"comm"], buf)?;
        cgroup::render(buf, p.slot, &p.comm, p.kernel_thread);
        self.dir.write(&[name, b"cgroup"], buf)?;
        if let Some(exe) = &p.exe {
            self.dir.symlink(exe.as_bytes(), &[name, b"exe"])?;
        }
        self.dir.mkdir(&[name, b"fd"])?;
        let pid = u64::from(p.pid);
        for fd in 0..p.fds {
            buf.clear();
            let inode = 20_000 + pid * 16 + u64::from(fd);
            let target: &[u8] = match fd {
                0 => b"/dev/null",
                1 | 2 => {
                    buf.extend_from_slice(b"pipe:[");
                    buf.extend_from_slice(Digits::new(inode).as_bytes());
                    buf.push(b']');
                    buf
                }
                _ => match fd % 4 {
                    0 => b"anon_inode:[eventpoll]",
                    1 => b"/var/log/app/current.log",
                    _ => {
                        buf.extend_from_slice(b"socket:[");
                        buf.extend_from_slice(Digits::new(inode).as_bytes());
                        buf.push(b']');
                        buf
                    }
                },
            };
            let n = Digits::new(u64::from(fd));
            self.dir.symlink(target, &[name, b"fd", n.as_bytes()])?;
        }
        if self.fixed_uid.is_none() {
            let uid = p.uid;
            self.dir.chown(&[name], uid)?;
        }
        Ok(())
    }

    /// Rewrite the files that change over time (stat, status, io).
    fn rewrite_process(&mut self, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let name = Digits::new(u64::from(self.procs[i].pid));
        let name = name.as_bytes();
        let atomic = self.config.atomic;
        let p = &self.procs[i];
        for file in [&b"stat"[..], b"status", b"io"] {
            match file {
                b"stat" => render::stat(buf, p),
                b"status" => render::status(buf, p, &self.machine),
                _ => render::io(buf, p),
            }
            if atomic {
                self.dir.replace(&[name, file], &[name, b".tmp"], buf)?;
            } else {
                self.dir.write(&[name, file], buf)?;
            }
        }
        Ok(())
    }

    /// Advance the simulated clock by one tick; see the module documentation.
    pub fn advance(&mut self) -> io::Result<Tick> {
        let dt = self.tick_ticks();
        self.now += dt;
        self.ticks += 1;
        let mut tick = Tick::default();

        // Exits: short-lived tools often, others rarely, never PID 1 or a
        // kernel thread. A parent that exits leaves its children to PID 1.
        let mut dying = Vec::new();
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            if p.pid == 1 || p.kernel_thread {
                continue;
            }
            let chance = if KINDS[p.kind].short {
                SHORT_DEATH
            } else {
                self.config.death_rate
            };
            if self.rng.chance(chance) {
                dying.push(i);
            }
        }
        // Highest index first: swap_remove then only moves entries that
        // are not pending.
        for &i in dying.iter().rev() {
            self.remove(i, &mut tick)?;
        }

        // Births keep the user population at its size.
        let mut buf = std::mem::take(&mut self.buf);
        let user = self.procs.len() - self.kernel_threads;
        for _ in user..self.config.processes {
            self.birth(dt, &mut tick, &mut buf)?;
        }

        // Everyone else: counters grow for those active this tick.
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            if p.born_tick == self.ticks {
                continue;
            }
            let active = if p.kernel_thread {
                0.3
            } else {
                KINDS[p.kind].active
            };
            if !p.dirty && !self.rng.chance(active) {
                continue;
            }
            self.evolve(i, dt);
            self.procs[i].dirty = false;
            self.rewrite_process(i, &mut buf)?;
            tick.updated += 1;
        }
        self.buf = buf;
        self.write_system_files(false)?;
        Ok(tick)
    }

    /// Process `i` exits: its directory goes, its PID is free, its children
    /// are re-parented to PID 1.
    fn remove(&mut self, i: usize, tick: &mut Tick) -> io::Result<()> {
        let p = self.procs.swap_remove(i);
        self.index.remove(&p.pid);
        if let Some(moved) = self.procs.get(i) {
            self.index.insert(moved.pid, i);
        }
        if let Some(&parent) = self.index.get(&p.ppid) {
            let parent = &mut self.procs[parent];
            parent.children = parent.children.saturating_sub(1);
        }
        if p.children > 0 {
            let mut adopted = 0;
            for q in self.procs.iter_mut().filter(|q| q.ppid == p.pid) {
                q.ppid = 1;
                q.dirty = true;
                adopted += 1;
                tick.reparented.push(q.pid);
            }
            if let Some(&init) = self.index.get(&1) {
                self.procs[init].children += adopted;
            }
        }
        if p.kind != usize::MAX && self.masters[p.kind] == Some(p.pid) {
            self.masters[p.kind] = None;
        }
        // Renamed away first, so the PID vanishes in one step for a reader.
        let name = Digits::new(u64::from(p.pid));
        self.path.clear();
        self.path.extend_from_slice(b".dead-");
        self.path.extend_from_slice(name.as_bytes());
        let dead = std::mem::take(&mut self.path);
        self.dir.rename(&[name.as_bytes()], &[dead.as_slice()])?;
        self.dir.remove_tree(&dead)?;
        self.path = dead;
        self.free_pids.push(p.pid);
        tick.died.push(p.pid);
        Ok(())
    }

    /// A new process started within the last tick, written under a
    /// temporary name and renamed into place so it appears whole.
    fn birth(&mut self, dt: u64, tick: &mut Tick, buf: &mut Vec<u8>) -> io::Result<()> {
        let k = self.rng.weighted(&self.cumulative);
        let reuse = !self.free_pids.is_empty() && self.rng.chance(self.config.pid_reuse);
        let pid = if reuse {
            let at = self.rng.below(self.free_pids.len() as u64) as usize;
            self.forks += 1;
            self.free_pids.swap_remove(at)
        } else {
            self.take_pid(KINDS[k].threads.1)
        };
        let starttime = self.now - self.rng.below(dt.min(self.now));
        let p = self.user_process(k, pid, starttime);
        self.insert(p);
        let i = self.procs.len() - 1;
        let name = Digits::new(u64::from(pid));
        let mut tmp = std::mem::take(&mut self.path);
        tmp.clear();
        tmp.extend_from_slice(b".new-");
        tmp.extend_from_slice(name.as_bytes());
        let written = self
            .write_process(&tmp, i, buf)
            .and_then(|()| self.dir.rename(&[tmp.as_slice()], &[name.as_bytes()]));
        self.path = tmp;
        written?;
        if reuse {
            tick.reused.push(pid);
        }
        tick.born.push(pid);
        Ok(())
    }

    /// One tick of activity for process `i`.
    fn evolve(&mut self, i: usize, dt: u64) {
        let page = self.page_size;
        let hz = self.hz as f64;
        let seconds = dt as f64 / hz;
        let r = &mut self.rng;
        let p = &mut self.procs[i];
        if p.kernel_thread {
            p.stime += r.below(dt / 50 + 2);
            p.voluntary_ctxt_switches += r.range(1, 40 * dt / self.hz.max(1) + 1);
            return;
        }
        let kind = &KINDS[p.kind];
        let cpu = (p.cpu_rate * seconds * hz * (0.5 + r.unit())) as u64;
        let user = (cpu as f64 * (0.6 + 0.3 * r.unit())) as u64;
        p.utime += user;
        p.stime += cpu - user;
        let io = p.io_rate * seconds * (0.2 + 1.6 * r.unit());
        let read = ((io * 0.3) as u64) / 4096 * 4096;
        let write = ((io * 0.7) as u64) / 4096 * 4096;
        p.read_bytes += read;
        p.write_bytes += write;
        p.rchar += read + r.range(100, 5_000) * dt / self.hz.max(1);
        p.wchar += write + r.range(10, 2_000) * dt / self.hz.max(1);
        p.syscr += r.range(1, 200);
        p.syscw += r.range(0, 100);
        p.minflt += r.range(0, 50 + cpu * 2);
        if r.chance(0.02) {
            p.majflt += 1;
        }
        let switches = r.range(1, 50) * dt / self.hz.max(1) + 1;
        p.voluntary_ctxt_switches += switches;
        p.nonvoluntary_ctxt_switches += switches / r.range(5, 50);
        p.state = if p.cpu_rate > 0.02 && r.chance(0.2) {
            b'R'
        } else {
            b'S'
        };
        p.processor = r.below(self.ncpus) as u32;
        // Memory drifts within the kind's range.
        if r.chance(0.5) {
            let lo = ((kind.rss_mib.0 * (1u64 << 20) as f64) as u64 / page).max(1);
            let hi = ((kind.rss_mib.1 * (1u64 << 20) as f64) as u64 / page).max(lo);
            let factor = 0.95 + 0.1 * r.unit();
            p.rss_pages = ((p.rss_pages as f64 * factor) as u64).clamp(lo, hi);
            p.rss_peak_pages = p.rss_peak_pages.max(p.rss_pages);
        }
        if kind.threads.0 < kind.threads.1 && r.chance(0.05) {
            let t = if r.chance(0.5) {
                p.num_threads + 1
            } else {
                p.num_threads.saturating_sub(1)
            };
            p.num_threads = t.clamp(u64::from(kind.threads.0), u64::from(kind.threads.1));
        }
        p.vsize = p.vsize_base + p.num_threads * 8 * (1 << 20);
        p.vsize_peak = p.vsize_peak.max(p.vsize);
    }

    /// `/proc/stat`, `/proc/uptime` (every tick), and the static files a
    /// real `/proc` lists besides the PIDs (only at creation).
    fn write_system_files(&mut self, first: bool) -> io::Result<()> {
        let mut totals = SystemTotals {
            ncpus: self.ncpus,
            boot_time: self.config.boot_time,
            hz: self.hz,
            uptime_ticks: self.now,
            forks: self.forks,
            ..SystemTotals::default()
        };
        for p in &self.procs {
            totals.user += p.utime;
            totals.system += p.stime;
            totals.context_switches += p.voluntary_ctxt_switches + p.nonvoluntary_ctxt_switches;
            totals.running += u64::from(p.state == b'R');
        }
        let capacity = self.now.saturating_mul(self.ncpus);
        totals.softirq = capacity / 200;
        totals.idle = capacity.saturating_sub(totals.user + totals.system + totals.softirq);
        totals.interrupts = totals.context_switches / 2 + self.now;
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| -> io::Result<()> {
            render::proc_stat(&mut buf, &totals);
            if first {
                self.dir.write(&[b"stat"], &buf)?;
            } else {
                self.dir.replace(&[b"stat"], &[b".stat.tmp"], &buf)?;
            }
            render::uptime(&mut buf, &totals);
            self.dir.replace(&[b"uptime"], &[b".uptime.tmp"], &buf)?;
            if first {
                self.write_static_files()?;
            }
            Ok(())
        })();
        self.buf = buf;
        result
    }

    fn write_static_files(&mut self) -> io::Result<()> {
        let total_kib = 64 * 1024 * 1024;
        let used_kib: u64 = self
            .procs
            .iter()
            .map(|p| p.rss_pages * self.page_size / 1024)
            .sum();
        let free = total_kib - used_kib.min(total_kib / 10 * 9);
        let meminfo = format!(
            "MemTotal:       {total_kib:>8} kB\nMemFree:        {:>8} kB\nMemAvailable:   {free:>8} kB\nBuffers:        {:>8} kB\nCached:         {:>8} kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
            free / 2,
            total_kib / 100,
            free / 3,
        );
        self.dir.write(&[b"meminfo"], meminfo.as_bytes())?;
        let loadavg = format!(
            "0.52 0.58 0.59 3/{} {}\n",
            self.procs.len(),
            self.next_pid.saturating_sub(1)
        );
        self.dir.write(&[b"loadavg"], loadavg.as_bytes())?;
        self.dir.write(
            &[b"version"],
            b"Linux version 6.8.0-phoenix-synthetic (builder@phoenix) (gcc 13.2.0) #1 SMP PREEMPT_DYNAMIC\n",
        )?;
        let mut cpuinfo = String::new();
        for c in 0..self.ncpus {
            cpuinfo.push_str(&format!(
                "processor\t: {c}\nvendor_id\t: GenuineIntel\nmodel name\t: Synthetic CPU @ 2.90GHz\ncpu cores\t: {}\n\n",
                self.ncpus
            ));
        }
        self.dir.write(&[b"cpuinfo"], cpuinfo.as_bytes())?;
        for d in [
            &b"sys"[..],
            b"net",
            b"fs",
            b"irq",
            b"bus",
            b"driver",
            b"tty",
        ] {
            self.dir.mkdir(&[d])?;
        }
        Ok(())
    }
}

/// Make `root` ready for a new tree: create it, or clear an earlier
/// synthetic tree from it. Anything else (a non-empty directory without
/// the marker — a real root, a home directory) is refused, never removed.
fn prepare_root(root: &Path, config: &SynthConfig) -> io::Result<()> {
    match std::fs::read_dir(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(root)?,
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot use {}: {e}", root.display()),
            ));
        }
        Ok(mut entries) => {
            if root.join(MARKER).is_file() {
                for sub in ["proc", "etc"] {
                    let path = root.join(sub);
                    if path.exists() {
                        std::fs::remove_dir_all(&path).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("cannot remove the old {}: {e}", path.display()),
                            )
                        })?;
                    }
                }
            } else if entries.next().is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is not empty and holds no synthetic tree (no {MARKER} file); refusing to write into it",
                        root.display()
                    ),
                ));
            }
        }
    }
    std::fs::write(
        root.join(MARKER),
        format!(
            "phoenix-sim synthetic /proc\nprocesses: {}\nkernel_threads: {}\nseed: {}\n",
            config.processes, config.kernel_threads, config.seed
        ),
    )
}
