//! The simulator proper: spawn a profile's processes, keep every group at
//! its count (respawning what exits, replacing what churns), and on a
//! signal or at the end of `--duration` kill them all and account for each.
//!
//! How no child outlives the simulator:
//! - Children get `PR_SET_PDEATHSIG = SIGKILL` between fork and exec, and
//!   check `getppid()` right after, closing the race with a simulator that
//!   dies in between. This covers `kill -9` of the simulator. The death
//!   signal fires when the *thread* that forked exits, so all spawning is
//!   done by the simulator's one and only thread.
//! - Children share one process group of their own (led by the first child;
//!   a new one when every child has exited), which the simulator kills with
//!   one `kill(-pgid, SIGKILL)` on stop. It is not the simulator's group, so
//!   the simulator never signals itself, and a terminal's Ctrl-C reaches the
//!   simulator (in the foreground group) and not the children directly.
//! - SIGINT, SIGTERM, SIGHUP and SIGCHLD are blocked and taken with
//!   `sigtimedwait` in the main loop: no signal handlers, nothing
//!   async-signal-unsafe, and no child exit missed while the loop is busy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::{CHILD_ENV, Workload};
use super::duration::HumanDuration;
use super::exe::ExeDir;
use super::profile::{Group, Profile};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: Profile,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Where the directory of named executables goes.
    pub work_base: PathBuf,
    /// No progress lines on stderr (the summary is returned either way).
    pub quiet: bool,
}

/// Why the simulator stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(i32),
    /// `--duration` elapsed.
    Duration,
    /// Children kept failing or could not be spawned: a runtime error.
    Failed(String),
}

/// What a run did; printed on exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub profile: String,
    pub runtime: Duration,
    /// Processes started.
    pub spawned: u64,
    /// Processes that ended while the simulator ran (lifetime, churn, crash).
    pub exited: u64,
    /// Of `exited`, those that ended on their own with an error or a signal
    /// the simulator did not send.
    pub failed: u64,
    /// Spawns that failed (fork or exec error).
    pub spawn_errors: u64,
    /// Processes running when the simulator stopped, all killed by it.
    pub running_at_stop: u64,
    /// Most processes running at once.
    pub peak_running: u64,
    /// Killed processes that could not be reaped within the grace period
    /// (stuck in the kernel); always 0 in practice.
    pub not_reaped: u64,
    pub stopped_by: StopReason,
}

impl Summary {
    /// Whether the run ended as asked (a signal or the duration), not on an error.
    pub fn ok(&self) -> bool {
        !matches!(self.stopped_by, StopReason::Failed(_))
    }
}

impl fmt::Display for Summary {
    /// `key: value` lines: easy to read, and valid YAML for scripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stopped_by = match &self.stopped_by {
            StopReason::Signal(s) => signal_name(*s).to_string(),
            StopReason::Duration => "duration".to_string(),
            StopReason::Failed(why) => format!("error: {why}"),
        };
        writeln!(f, "# phoenix-sim summary")?;
        writeln!(f, "profile: {}", self.profile)?;
        writeln!(f, "runtime_seconds: {:.3}", self.runtime.as_secs_f64())?;
        writeln!(f, "spawned: {}", self.spawned)?;
        writeln!(f, "exited: {}", self.exited)?;
        writeln!(f, "failed: {}", self.failed)?;
        writeln!(f, "spawn_errors: {}", self.spawn_errors)?;
        writeln!(f, "running_at_stop: {}", self.running_at_stop)?;
        writeln!(f, "peak_running: {}", self.peak_running)?;
        writeln!(f, "not_reaped: {}", self.not_reaped)?;
        writeln!(f, "stopped_by: {stopped_by:?}")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Private memory of one idle child before its workload allocates
/// anything (measured: a few hundred KiB of heap, stack, page tables and
/// relocated data; rounded up), for the pre-flight memory check.
const CHILD_BASELINE_MIB: u64 = 1;
/// Churn is applied in steps this long.
const CHURN_TICK: Duration = Duration::from_millis(50);
/// A group whose processes end this soon after starting, with an error,
/// this many times in a row, is broken: stop rather than fork in a loop.
const QUICK_FAILURE: Duration = Duration::from_secs(1);
const QUICK_FAILURES_TO_STOP: u32 = 5;
const SPAWN_ERRORS_TO_STOP: u32 = 5;
/// How long killed children get to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(10);

/// Check that the machine can hold the profile, before spawning anything.
pub fn preflight(profile: &Profile) -> Result<(), String> {
    let t = profile.totals();
    let needed = t.memory_mib + t.processes * CHILD_BASELINE_MIB;
    if let Some(available) = meminfo_available_mib()
        && needed > available / 10 * 8
    {
        return Err(format!(
            "profile {} needs about {needed} MiB of memory, but only {available} MiB is available; lower count or memory_mib",
            profile.name
        ));
    }
    if let Some(pid_max) = read_number("/proc/sys/kernel/pid_max")
        && t.threads > pid_max / 10 * 8
    {
        return Err(format!(
            "profile {} needs {} threads, each a PID, but kernel.pid_max is {pid_max}",
            profile.name, t.threads
        ));
    }
    Ok(())
}

fn meminfo_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Run the profile until a stop signal or the duration; every child is
/// dead and reaped when this returns. `Err` is a setup failure, found
/// before anything was spawned.
pub fn run(options: Options) -> Result<Summary, String> {
    preflight(&options.profile)?;
    let mut exes = ExeDir::create(&options.work_base).map_err(|e| e.to_string())?;
    // SAFETY: getpid cannot fail.
    let own_pid = unsafe { libc::getpid() };
    let own_pid_u32 = u32::try_from(own_pid).map_err(|_| "negative pid".to_string())?;
    let mut groups = Vec::with_capacity(options.profile.groups.len());
    for spec in &options.profile.groups {
        let exe = exes.exe(&spec.name).map_err(|e| e.to_string())?;
        let workload = Workload {
            parent: own_pid_u32,
            cpu_percent: spec.cpu_percent,
            memory_mib: spec.memory_mib,
            threads: spec.threads,
            lifetime: spec.lifetime.map(|l| l.0),
        };
        groups.push(GroupRun {
            spec: spec.clone(),
            exe,
            env: workload.encode(),
            members: VecDeque::new(),
            started_once: false,
            churn_credit: 0.0,
            quick_failures: 0,
        });
    }

    let say = |line: &str| {
        if !options.quiet {
            // Progress is best effort: a closed stderr must not stop the run.
            let _ = writeln!(io::stderr(), "phoenix-sim: {line}");
        }
    };
    let t = options.profile.totals();
    say(&format!(
        "profile {}: {} processes in {} groups ({} threads, {} MiB, {:.1}% of a core, {:.1} spawns/s); executables in {}",
        options.profile.name,
        t.processes,
        groups.len(),
        t.threads,
        t.memory_mib,
        t.cpu_percent,
        t.spawns_per_second,
        exes.path().display()
    ));
    if exes.copied {
        say("hard links were impossible there; the binary was copied once per name");
    }

    let signals =
        BlockedSignals::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGCHLD]);
    let mut sim = Sim {
        groups,
        children: HashMap::new(),
        stopping: HashSet::new(),
        pgid: None,
        own_pid,
        signals: &signals,
        reap_due: false,
        stop: None,
        spawned: 0,
        exited: 0,
        failed: 0,
        spawn_errors: 0,
        consecutive_spawn_errors: 0,
        peak: 0,
    };
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);

    sim.top_up();
    if sim.stop.is_none() {
        say(&format!(
            "{} processes running after {:.1}s; stop with Ctrl-C or SIGTERM{}",
            sim.children.len(),
            started.elapsed().as_secs_f64(),
            options
                .duration
                .map(|d| format!(" (or wait {})", HumanDuration(d)))
                .unwrap_or_default()
        ));
    }
    let churning = sim.groups.iter().any(|g| g.spec.churn_per_second > 0.0);
    let mut last_churn = Instant::now();
    while sim.stop.is_none() {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            sim.stop = Some(StopReason::Duration);
            break;
        }
        let mut timeout = Duration::from_secs(1);
        if sim.reap_due {
            // A SIGCHLD was taken while spawning: don't wait for another.
            timeout = Duration::ZERO;
        }
        if churning {
            timeout = timeout.min((last_churn + CHURN_TICK).saturating_duration_since(now));
        }
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        sim.wait(timeout);
        sim.reap();
        let now = Instant::now();
        if churning && now >= last_churn + CHURN_TICK {
            sim.churn((now - last_churn).as_secs_f64());
            last_churn = now;
        }
        if sim.stop.is_none() {
            sim.top_up();
        }
    }

    let (running_at_stop, not_reaped) = sim.kill_all();
    let summary = Summary {
        profile: options.profile.name.clone(),
        runtime: started.elapsed(),
        spawned: sim.spawned,
        exited: sim.exited,
        failed: sim.failed,
        spawn_errors: sim.spawn_errors,
        running_at_stop,
        peak_running: sim.peak,
        not_reaped,
        stopped_by: sim.stop.take().unwrap_or(StopReason::Duration),
    };
    drop(sim);
    drop(signals);
    drop(exes);
    Ok(summary)
}

/// One group while it runs.
struct GroupRun {
    spec: Group,
    exe: PathBuf,
    /// The [`CHILD_ENV`] value of its processes.
    env: String,
    /// Running processes, oldest first (churn stops the oldest).
    members: VecDeque<Member>,
    /// Whether the initial `count` was spawned (groups without respawn get
    /// no more).
    started_once: bool,
    /// Fractional replacements owed by `churn_per_second`.
    churn_credit: f64,
    quick_failures: u32,
}

struct Member {
    pid: i32,
    started: Instant,
}

struct Sim<'a> {
    groups: Vec<GroupRun>,
    /// Unreaped children → their group. An unreaped PID cannot be reused by
    /// the kernel, so signalling a PID in here never hits a stranger.
    children: HashMap<i32, usize>,
    /// Children sent SIGTERM by churn: their end is expected.
    stopping: HashSet<i32>,
    /// The children's process group, while it has members.
    pgid: Option<i32>,
    own_pid: i32,
    signals: &'a BlockedSignals,
    /// A SIGCHLD was taken and its children are not reaped yet.
    reap_due: bool,
    stop: Option<StopReason>,
    spawned: u64,
    exited: u64,
    failed: u64,
    spawn_errors: u64,
    consecutive_spawn_errors: u32,
    peak: u64,
}

impl Sim<'_> {
    /// Wait up to `timeout` for a signal; a stop signal sets `stop`.
    fn wait(&mut self, timeout: Duration) {
        match self.signals.wait(timeout) {
            Some(libc::SIGCHLD) => self.reap_due = true,
            Some(sig) => self.stop = Some(StopReason::Signal(sig)),
            None => {}
        }
    }

    /// Bring every group up to its count. Checks for stop signals between
    /// spawns, so that Ctrl-C during the start of 2,000 processes is prompt.
    fn top_up(&mut self) {
        for gi in 0..self.groups.len() {
            let g = &self.groups[gi];
            if g.started_once && !g.spec.respawn {
                continue;
            }
            while self.groups[gi].members.len() < self.groups[gi].spec.count as usize {
                if !self.spawn(gi) {
                    return;
                }
                self.wait(Duration::ZERO);
                if self.stop.is_some() {
                    return;
                }
            }
            self.groups[gi].started_once = true;
        }
    }

    /// Start one process of group `gi`; false when it could not be.
    fn spawn(&mut self, gi: usize) -> bool {
        let g = &self.groups[gi];
        let mut cmd = Command::new(&g.exe);
        cmd.arg0(&g.spec.name)
            .args(&g.spec.args)
            .env(CHILD_ENV, &g.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(self.pgid.unwrap_or(0));
        let parent = self.own_pid;
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls (sigprocmask, prctl, getppid) without
        // allocating.
        unsafe {
            cmd.pre_exec(move || {
                // The mask survives exec and std does not reset it: without
                // this, children would inherit SIGTERM blocked and ignore churn.
                let mut none = MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(none.as_mut_ptr());
                libc::pthread_sigmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The simulator died before the signal was armed: the child
                // now belongs to init and must not start.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                // `Child` does not kill or wait on drop; the PID is reaped
                // by `reap` with waitpid.
                let Ok(pid) = i32::try_from(child.id()) else {
                    return false;
                };
                self.pgid.get_or_insert(pid);
                self.children.insert(pid, gi);
                self.groups[gi].members.push_back(Member {
                    pid,
                    started: Instant::now(),
                });
                self.spawned += 1;
                self.consecutive_spawn_errors = 0;
                self.peak = self.peak.max(self.children.len() as u64);
                true
            }
            Err(e) => {
                self.spawn_errors += 1;
                self.consecutive_spawn_errors += 1;
                if self.consecutive_spawn_errors >= SPAWN_ERRORS_TO_STOP {
                    self.stop = Some(StopReason::Failed(format!(
                        "cannot spawn {} ({}): {e}",
                        self.groups[gi].spec.name,
                        self.groups[gi].exe.display()
                    )));
                }
                false
            }
        }
    }

    /// Collect every child that has ended.
    fn reap(&mut self) {
        self.reap_due = false;
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-parameter.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            self.on_exit(pid, status);
        }
        if self.children.is_empty() {
            // The group died with its last member; the next child leads a new one.
            self.pgid = None;
        }
    }

    fn on_exit(&mut self, pid: i32, status: i32) {
        let Some(gi) = self.children.remove(&pid) else {
            return;
        };
        let expected = self.stopping.remove(&pid);
        self.exited += 1;
        let g = &mut self.groups[gi];
        let lived = g
            .members
            .iter()
            .position(|m| m.pid == pid)
            .and_then(|i| g.members.remove(i))
            .map(|m| m.started.elapsed());
        let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if expected || clean {
            g.quick_failures = 0;
            return;
        }
        self.failed += 1;
        if lived.is_some_and(|l| l < QUICK_FAILURE) {
            g.quick_failures += 1;
        } else {
            g.quick_failures = 0;
        }
        if g.quick_failures >= QUICK_FAILURES_TO_STOP {
            self.stop = Some(StopReason::Failed(format!(
                "group {}: {} processes in a row ended within {}s of starting, the last with {}",
                g.spec.name,
                g.quick_failures,
                QUICK_FAILURE.as_secs(),
                describe(status)
            )));
        }
    }

    /// Stop the oldest processes of churning groups, `churn_per_second`
    /// per second; `top_up` replaces them once they are reaped.
    fn churn(&mut self, elapsed_secs: f64) {
        for g in &mut self.groups {
            if g.spec.churn_per_second <= 0.0 {
                continue;
            }
            // Capped, so a stalled loop does not replace a whole group at once.
            g.churn_credit = (g.churn_credit + g.spec.churn_per_second * elapsed_secs)
                .min(f64::from(g.spec.count));
            while g.churn_credit >= 1.0 {
                let Some(victim) = g
                    .members
                    .iter()
                    .find(|m| !self.stopping.contains(&m.pid))
                    .map(|m| m.pid)
                else {
                    break;
                };
                // SAFETY: kill has no memory-safety preconditions; `victim`
                // is an unreaped child of ours.
                unsafe { libc::kill(victim, libc::SIGTERM) };
                self.stopping.insert(victim);
                g.churn_credit -= 1.0;
            }
        }
    }

    /// Kill every child and reap them. Returns (running when stopped, not
    /// reaped within the grace period).
    fn kill_all(&mut self) -> (u64, u64) {
        // Whoever ended on their own before the stop is an exit, not a kill.
        self.reap();
        let running = self.children.len() as u64;
        if let Some(pgid) = self.pgid
            && !self.children.is_empty()
        {
            // SAFETY: as above; the group exists while it has unreaped members.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        for &pid in self.children.keys() {
            // Every child is in the group; this covers one that somehow is not.
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let until = Instant::now() + REAP_GRACE;
        while !self.children.is_empty() && Instant::now() < until {
            let mut status = 0;
            // SAFETY: `status` is a valid out-parameter.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                self.children.remove(&pid);
            } else if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                self.children.clear();
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        (running, self.children.len() as u64)
    }
}

/// "exit status 3", "signal 9 (SIGKILL)".
fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGKILL => " (SIGKILL: out of memory?)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGABRT => " (SIGABRT)",
            _ => "",
        };
        format!("signal {sig}{name}")
    } else {
        format!("status {status:#x}")
    }
}

/// Signals blocked for the life of the value, taken with [`Self::wait`].
struct BlockedSignals {
    set: libc::sigset_t,
    old: libc::sigset_t,
}

impl BlockedSignals {
    fn block(signals: &[i32]) -> BlockedSignals {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises `set`; sigaddset and
        // pthread_sigmask take valid pointers to initialised sets, and
        // pthread_sigmask fills `old`.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            libc::sigemptyset(old.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
            BlockedSignals {
                set: set.assume_init(),
                old: old.assume_init(),
            }
        }
    }

    /// The next pending blocked signal, waiting up to `timeout`.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(i32::try_from(timeout.subsec_nanos()).unwrap_or(0)),
        };
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        // SAFETY: the set is initialised, `info` and `ts` are valid pointers.
        let sig = unsafe { libc::sigtimedwait(&self.set, info.as_mut_ptr(), &ts) };
        (sig > 0).then_some(sig)
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // Every child is reaped by now, so a signal still pending does what
        // it would have done without the simulator (a second Ctrl-C ends it).
        // SAFETY: `old` is the initialised mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_yaml() {
        let s = Summary {
            profile: "realistic".into(),
            runtime: Duration::from_millis(1500),
            spawned: 10,
            exited: 4,
            failed: 1,
            spawn_errors: 0,
            running_at_stop: 6,
            peak_running: 7,
            not_reaped: 0,
            stopped_by: StopReason::Failed("group x: \"boom\"".into()),
        };
        let v: serde_norway::Value = serde_norway::from_str(&s.to_string()).expect("yaml");
        assert_eq!(v["spawned"].as_u64(), Some(10));
        assert_eq!(v["runtime_seconds"].as_f64(), Some(1.5));
        assert_eq!(v["stopped_by"].as_str(), Some("error: group x: \"boom\""));
        assert!(!s.ok());
    }

    #[test]
    fn exit_statuses_are_described() {
        assert_eq!(describe(3 << 8), "exit status 3");
        assert_eq!(
            describe(libc::SIGKILL),
            "signal 9 (SIGKILL: out of memory?)"
        );
    }

    #[test]
    fn preflight_rejects_what_the_machine_cannot_hold() {
        let mut p = super::super::profile::Profile {
            name: "huge".into(),
            groups: vec![Group::new("x", 1).memory(super::super::profile::MAX_MEMORY_MIB)],
        };
        // Only meaningful where MemAvailable is below 64 GiB; skip otherwise.
        if meminfo_available_mib().is_some_and(|m| m < 50_000) {
            let e = preflight(&p).expect_err("too big");
            assert!(e.contains("MiB of memory"), "{e}");
        }
        p.groups[0].memory_mib = 0;
        assert_eq!(preflight(&p), Ok(()));
    }
}
