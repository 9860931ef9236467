//! The workload one simulated process runs.
//!
//! The simulator re-executes its own binary under the group's name, with the
//! workload in the [`CHILD_ENV`] environment variable rather than on the
//! command line, so that `/proc/PID/cmdline` can look like the real
//! program's (`postgres -D /var/lib/postgresql/16/main`).
//!
//! A child is light on purpose: it allocates and touches its memory once,
//! then its threads sleep. Only the threads needed for `cpu_percent` wake up,
//! once per [`PERIOD`], to spin for their share of it.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// The environment variable that turns `phoenix-sim` into a child.
pub const CHILD_ENV: &str = "PHOENIX_SIM_CHILD";

/// The duty-cycle period: long enough that a busy burst is many scheduler
/// slices (so the CPU time the kernel accounts matches what was asked), short
/// enough that a 10-second scrape interval sees a steady rate.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Stack of each extra thread: the workers only spin or sleep, and small
/// stacks keep 2,000 processes of 40 threads affordable.
const THREAD_STACK: usize = 64 * 1024;

/// What one child does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// The simulator's PID: a child whose parent is already someone else
    /// (the simulator died before the child armed its death signal) exits.
    pub parent: u32,
    pub cpu_percent: f64,
    pub memory_mib: u64,
    pub threads: u32,
    pub lifetime: Option<Duration>,
}

impl Workload {
    /// The value of [`CHILD_ENV`]: `parent=1 cpu=2.5 mem=8 threads=4 lifetime_ms=3000`.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "parent={} cpu={} mem={} threads={}",
            self.parent, self.cpu_percent, self.memory_mib, self.threads
        );
        if let Some(l) = self.lifetime {
            // Writing to a String cannot fail.
            let _ = write!(s, " lifetime_ms={}", l.as_millis());
        }
        s
    }

    pub fn decode(text: &str) -> Result<Workload, String> {
        let mut w = Workload {
            parent: 0,
            cpu_percent: 0.0,
            memory_mib: 0,
            threads: 1,
            lifetime: None,
        };
        for field in text.split_ascii_whitespace() {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("{field:?} is not key=value"))?;
            let bad = || format!("invalid {key} {value:?}");
            match key {
                "parent" => w.parent = value.parse().map_err(|_| bad())?,
                "cpu" => w.cpu_percent = value.parse().map_err(|_| bad())?,
                "mem" => w.memory_mib = value.parse().map_err(|_| bad())?,
                "threads" => w.threads = value.parse().map_err(|_| bad())?,
                "lifetime_ms" => {
                    w.lifetime = Some(Duration::from_millis(value.parse().map_err(|_| bad())?));
                }
                _ => return Err(format!("unknown key {key:?}")),
            }
        }
        if w.parent == 0 {
            return Err("parent is missing".into());
        }
        if w.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        if !w.cpu_percent.is_finite()
            || w.cpu_percent < 0.0
            || w.cpu_percent > 100.0 * f64::from(w.threads)
        {
            return Err(format!(
                "cpu {} is not between 0 and 100 x threads",
                w.cpu_percent
            ));
        }
        Ok(w)
    }

    /// Threads that burn CPU: as few as can carry `cpu_percent` (each at
    /// most one core), so that the other threads never wake up.
    pub fn burners(&self) -> u32 {
        if self.cpu_percent <= 0.0 {
            0
        } else {
            // cpu_percent <= 100 × threads (checked), so this fits the thread count.
            ((self.cpu_percent / 100.0).ceil() as u32).clamp(1, self.threads)
        }
    }
}

/// Run as a child: never returns. Exit status 0 when the lifetime ends, 1
/// when the workload cannot be set up (no memory, no threads), 2 when the
/// environment variable is malformed.
pub fn main(spec: &str) -> ! {
    let w = match Workload::decode(spec) {
        Ok(w) => w,
        Err(e) => fail(2, &format!("bad {CHILD_ENV}: {e}")),
    };
    arm_death_signal(w.parent);
    // Ignored signals and the signal mask survive exec (a shell's `&`
    // ignores SIGINT, the simulator blocks SIGTERM); the simulator stops
    // children with SIGTERM, so make sure it works.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: resetting a disposition to the default has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set that pthread_sigmask reads.
    unsafe {
        libc::sigemptyset(none.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
    }
    let started = Instant::now();
    let deadline = w.lifetime.map(|l| started + l);

    let memory = touch_memory(w.memory_mib);

    let burners = w.burners();
    let share = if burners == 0 {
        0.0
    } else {
        (w.cpu_percent / 100.0 / f64::from(burners)).min(1.0)
    };
    // Spread the bursts of many children over the period instead of having
    // them all wake at once.
    let phase = PERIOD.mul_f64(f64::from(std::process::id() % 97) / 97.0);
    for i in 1..w.threads {
        let burner = i < burners;
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if burner {
                    burn(share, phase, None);
                } else {
                    idle(None);
                }
            });
        if let Err(e) = spawned {
            fail(1, &format!("cannot start thread {i} of {}: {e}", w.threads));
        }
    }
    if burners > 0 {
        burn(share, phase, deadline);
    } else {
        idle(deadline);
    }
    black_box(&memory);
    std::process::exit(0);
}

fn fail(code: i32, message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "phoenix-sim child: {message}");
    std::process::exit(code);
}

/// Die with the simulator. The simulator already armed this between fork
/// and exec; it is armed again here because exec of a file with
/// capabilities would clear it, and checked against the race it leaves:
/// had the simulator died before the signal was armed, the child would
/// have been re-parented and nobody would ever kill it.
fn arm_death_signal(parent: u32) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    if u32::try_from(ppid).ok() != Some(parent) {
        std::process::exit(0);
    }
}

/// `mib` MiB, every page written, so that it is resident (RSS) rather than
/// only reserved; a failed allocation ends the child with a message
/// instead of an abort.
fn touch_memory(mib: u64) -> Vec<u8> {
    let Some(bytes) = mib
        .checked_mul(1 << 20)
        .and_then(|b| usize::try_from(b).ok())
    else {
        fail(1, &format!("cannot allocate {mib} MiB"));
    };
    let mut v = Vec::new();
    if v.try_reserve_exact(bytes).is_err() {
        fail(1, &format!("cannot allocate {mib} MiB"));
    }
    // Non-zero, so no page can stay the shared zero page.
    v.resize(bytes, 0x5a);
    v
}

/// Sleep until `deadline`, or forever.
fn idle(deadline: Option<Instant>) {
    loop {
        match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return;
                }
                std::thread::sleep(d - now);
            }
            // Parks may wake spuriously: loop.
            None => std::thread::park(),
        }
    }
}

/// Spin for `share` of every [`PERIOD`] and sleep the rest, until `deadline`.
///
/// Busy time is measured in wall-clock time, not CPU time: on a machine
/// that is already saturated the child gets less CPU than asked rather than
/// spinning longer to make up for it, so the simulator never takes more
/// than its profile says.
fn burn(share: f64, phase: Duration, deadline: Option<Instant>) {
    let busy = PERIOD.mul_f64(share);
    std::thread::sleep(phase);
    let mut cycle = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        if deadline.is_some_and(|d| cycle >= d) {
            return;
        }
        // Busy from when the thread actually woke, not from when it meant
        // to: wake-up latency would otherwise come out of every burst.
        let stop = Instant::now() + busy;
        while Instant::now() < stop {
            for _ in 0..256 {
                x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        cycle += PERIOD;
        let now = Instant::now();
        if cycle <= now {
            // Fell behind (the machine is busy): start afresh, don't catch up.
            cycle = now;
            continue;
        }
        let wake = match deadline {
            Some(d) => cycle.min(d),
            None => cycle,
        };
        std::thread::sleep(wake.saturating_duration_since(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_round_trips_through_the_environment() {
        let w = Workload {
            parent: 42,
            cpu_percent: 2.5,
            memory_mib: 8,
            threads: 4,
            lifetime: Some(Duration::from_millis(3000)),
        };
        assert_eq!(Workload::decode(&w.encode()), Ok(w));
        let forever = Workload {
            lifetime: None,
            ..w
        };
        assert_eq!(Workload::decode(&forever.encode()), Ok(forever));
    }

    #[test]
    fn bad_workloads_are_errors() {
        for bad in [
            "",
            "parent=1 threads=0",
            "parent=x",
            "parent=1 cpu=250 threads=2",
            "parent=1 cpu=NaN",
            "parent=1 color=red",
            "parent=1 mem",
            "parent=1 lifetime_ms=-5",
        ] {
            assert!(Workload::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn burners_carry_the_cpu_share() {
        let w = |cpu, threads| Workload {
            parent: 1,
            cpu_percent: cpu,
            memory_mib: 0,
            threads,
            lifetime: None,
        };
        assert_eq!(w(0.0, 40).burners(), 0);
        assert_eq!(w(0.5, 40).burners(), 1);
        assert_eq!(w(100.0, 40).burners(), 1);
        assert_eq!(w(150.0, 2).burners(), 2);
        assert_eq!(w(400.0, 4).burners(), 4);
    }
}
