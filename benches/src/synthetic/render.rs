//! The text of each `/proc` file, byte for byte as Linux 6.x writes it
//! (fs/proc/array.c, fs/proc/base.c, fs/proc/stat.c): field order, widths,
//! tabs and trailing newlines included, so a parser that accepts these
//! accepts the real thing and the other way round.
//!
//! Everything renders into a caller's reused buffer; for 100,000 processes
//! that is the difference between a few hundred thousand allocations per
//! tick and none.

use std::io::Write as _;

use super::SynthProcess;

/// `PF_KTHREAD`, as in the stat `flags` field.
pub const PF_KTHREAD: u32 = 0x0020_0000;
/// Flags of a kernel thread as `kthreadd` shows them (PF_KTHREAD |
/// PF_NOFREEZE | PF_FORKNOEXEC | ...).
pub const KTHREAD_FLAGS: u32 = 0x0020_8040;
/// Flags of an ordinary process (PF_RANDOMIZE | PF_SUPERPRIV | ...).
pub const USER_FLAGS: u32 = 0x0040_0100;
/// `RLIM_INFINITY` as the stat `rsslim` field prints it.
const RLIM_INFINITY: u64 = u64::MAX;

/// Deterministic, plausible user-space addresses for the stat fields a
/// parser skips (code, stack, argument and environment areas), derived
/// from the PID so that nothing has to be stored for them.
fn addresses(pid: u32) -> [u64; 10] {
    let mut z = u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 29;
    let code = 0x5500_0000_0000 + (z & 0x00ff_ffff_f000);
    let stack = 0x7ffc_0000_0000 + ((z >> 20) & 0x0003_ffff_f000);
    [
        code,             // startcode
        code + 0x1_2000,  // endcode
        stack + 0x1a60,   // startstack
        code + 0x2_0000,  // start_data
        code + 0x2_1640,  // end_data
        code + 0x26_4000, // start_brk
        stack + 0x2f2e,   // arg_start
        stack + 0x2f5a,   // arg_end
        stack + 0x2f5a,   // env_start
        stack + 0x3fe7,   // env_end
    ]
}

/// `/proc/PID/stat`: 52 fields on one line (proc_pid_stat(5)).
pub fn stat(out: &mut Vec<u8>, p: &SynthProcess) {
    out.clear();
    let (flags, pgrp, session, tpgid) = if p.kernel_thread {
        (KTHREAD_FLAGS, 0, 0, -1)
    } else {
        (USER_FLAGS, p.pgrp, p.pgrp, -1)
    };
    // High-priority kernel workers ("kworker/0:1H-kblockd") run at nice -20.
    let prio = if p.kernel_thread && p.comm.contains("H-") {
        0
    } else {
        20
    };
    let _ = write!(
        out,
        "{} ({}) {} {} {pgrp} {session} 0 {tpgid} {flags} {} 0 {} 0 {} {} 0 0 {prio} {} {} 0 {} {} {} {RLIM_INFINITY} ",
        p.pid,
        p.comm,
        char::from(p.state),
        p.ppid,
        p.minflt,
        p.majflt,
        p.utime,
        p.stime,
        if prio == 0 { -20 } else { 0 },
        p.num_threads,
        p.starttime,
        p.vsize,
        p.rss_pages,
    );
    if p.kernel_thread {
        // No mm: every address is 0; kernel threads ignore all signals,
        // show wchan as 1 and have no exit signal (as kthreadd's line reads).
        let _ = writeln!(
            out,
            "0 0 0 0 0 0 0 2147483647 0 1 0 0 0 {} 0 0 0 0 0 0 0 0 0 0 0 0 0",
            p.processor
        );
    } else {
        let a = addresses(p.pid);
        let _ = writeln!(
            out,
            "{} {} {} 0 0 0 0 4096 {} 0 0 0 17 {} 0 0 {} 0 0 {} {} {} {} {} {} {} 0",
            a[0],
            a[1],
            a[2],
            p.sigcatch,
            p.processor,
            p.blkio_ticks,
            a[3],
            a[4],
            a[5],
            a[6],
            a[7],
            a[8],
            a[9],
        );
    }
}

/// `/proc/PID/io`.
pub fn io(out: &mut Vec<u8>, p: &SynthProcess) {
    out.clear();
    let _ = write!(
        out,
        "rchar: {}\nwchar: {}\nsyscr: {}\nsyscw: {}\nread_bytes: {}\nwrite_bytes: {}\ncancelled_write_bytes: {}\n",
        p.rchar, p.wchar, p.syscr, p.syscw, p.read_bytes, p.write_bytes, p.cancelled_write_bytes
    );
}

/// The lines of `/proc/PID/status` that are the same for every process
/// of a machine, rendered once per tree.
#[derive(Debug, Clone)]
pub struct Machine {
    pub page_kib: u64,
    /// `SigQ` limit (RLIMIT_SIGPENDING).
    pub sigq_limit: u64,
    pub cpus_allowed: String,
    pub cpus_allowed_list: String,
}

impl Machine {
    pub fn new(page_size: u64, ncpus: u64) -> Machine {
        let ncpus = ncpus.max(1);
        // The kernel prints the mask in 32-bit words, most significant
        // first, comma-separated ("ffffffff,ffffffff" for 64 CPUs).
        let words = ncpus.div_ceil(32);
        let mut cpus_allowed = String::new();
        for w in (0..words).rev() {
            let bits = (ncpus - w * 32).min(32);
            let word = if bits == 32 {
                u32::MAX
            } else {
                (1u32 << bits) - 1
            };
            if !cpus_allowed.is_empty() {
                cpus_allowed.push(',');
            }
            if w == words - 1 {
                cpus_allowed.push_str(&format!("{word:x}"));
            } else {
                cpus_allowed.push_str(&format!("{word:08x}"));
            }
        }
        Machine {
            page_kib: (page_size / 1024).max(1),
            sigq_limit: 96_365,
            cpus_allowed,
            cpus_allowed_list: if ncpus == 1 {
                "0".into()
            } else {
                format!("0-{}", ncpus - 1)
            },
        }
    }
}

/// `/proc/PID/status` (proc_pid_status(5)); kernel threads have no `Vm*`
/// lines, as they have no address space.
pub fn status(out: &mut Vec<u8>, p: &SynthProcess, m: &Machine) {
    out.clear();
    let state = match p.state {
        b'R' => "R (running)",
        b'D' => "D (disk sleep)",
        b'I' => "I (idle)",
        _ => "S (sleeping)",
    };
    let fd_size = p.fds.next_power_of_two().max(64);
    let uid = p.uid;
    let _ = write!(
        out,
        "Name:\t{}\nUmask:\t0022\nState:\t{state}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\n\
         Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\nFDSize:\t{fd_size}\nGroups:\t \n\
         NStgid:\t{pid}\nNSpid:\t{pid}\nNSpgid:\t{}\nNSsid:\t{}\nKthread:\t{}\n",
        p.comm,
        p.ppid,
        p.pgrp,
        p.pgrp,
        u8::from(p.kernel_thread),
        pid = p.pid,
    );
    if !p.kernel_thread {
        let kib = |bytes: u64| bytes / 1024;
        let rss = p.rss_pages * m.page_kib;
        let hwm = p.rss_peak_pages.max(p.rss_pages) * m.page_kib;
        let anon = rss / 10 * 7;
        let file = rss - anon;
        let size = kib(p.vsize);
        let peak = kib(p.vsize_peak.max(p.vsize));
        let pte = (size / 512).max(12);
        let _ = write!(
            out,
            "VmPeak:\t{peak:>8} kB\nVmSize:\t{size:>8} kB\nVmLck:\t{:>8} kB\nVmPin:\t{:>8} kB\n\
             VmHWM:\t{hwm:>8} kB\nVmRSS:\t{rss:>8} kB\nRssAnon:\t{anon:>8} kB\nRssFile:\t{file:>8} kB\n\
             RssShmem:\t{:>8} kB\nVmData:\t{:>8} kB\nVmStk:\t{:>8} kB\nVmExe:\t{:>8} kB\nVmLib:\t{:>8} kB\n\
             VmPTE:\t{pte:>8} kB\nVmSwap:\t{:>8} kB\nHugetlbPages:\t{:>8} kB\nCoreDumping:\t0\nTHP_enabled:\t1\n\
             untag_mask:\t0xffffffffffffffff\n",
            0,
            0,
            0,
            anon + 200,
            132,
            1_024,
            size.saturating_sub(anon + 1_356) / 4,
            0,
            0,
        );
    }
    let (sigign, capeff) = if p.kernel_thread {
        (u64::MAX, "000001ffffffffff")
    } else if uid == 0 {
        (0x1000, "000001ffffffffff")
    } else {
        (0x1000, "0000000000000000")
    };
    let _ = write!(
        out,
        "Threads:\t{}\nSigQ:\t0/{}\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
         SigBlk:\t0000000000000000\nSigIgn:\t{sigign:016x}\nSigCgt:\t{:016x}\nCapInh:\t0000000000000000\n\
         CapPrm:\t{capeff}\nCapEff:\t{capeff}\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
         NoNewPrivs:\t0\nSeccomp:\t{}\nSeccomp_filters:\t{}\nSpeculation_Store_Bypass:\tthread vulnerable\n\
         SpeculationIndirectBranch:\tconditional enabled\nCpus_allowed:\t{}\nCpus_allowed_list:\t{}\n\
         Mems_allowed:\t00000000,00000001\nMems_allowed_list:\t0\n\
         voluntary_ctxt_switches:\t{}\nnonvoluntary_ctxt_switches:\t{}\n",
        p.num_threads,
        m.sigq_limit,
        p.sigcatch,
        u8::from(!p.kernel_thread && uid != 0) * 2,
        u8::from(!p.kernel_thread && uid != 0),
        m.cpus_allowed,
        m.cpus_allowed_list,
        p.voluntary_ctxt_switches,
        p.nonvoluntary_ctxt_switches,
    );
}

/// `/proc/stat` with the lines tools read: per-CPU times, `ctxt`,
/// `btime` (which the receiver takes creation times from), `processes`.
pub fn proc_stat(out: &mut Vec<u8>, s: &SystemTotals) {
    out.clear();
    let ncpus = s.ncpus.max(1);
    let per = |v: u64| v / ncpus;
    let _ = writeln!(
        out,
        "cpu  {} 0 {} {} 0 0 {} 0 0 0",
        s.user, s.system, s.idle, s.softirq
    );
    for c in 0..ncpus {
        let _ = writeln!(
            out,
            "cpu{c} {} 0 {} {} 0 0 {} 0 0 0",
            per(s.user),
            per(s.system),
            per(s.idle),
            per(s.softirq)
        );
    }
    let _ = write!(
        out,
        "intr {} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nctxt {}\nbtime {}\nprocesses {}\nprocs_running {}\nprocs_blocked 0\nsoftirq {} 0 {} 0 0 0 0 0 0 0 {}\n",
        s.interrupts,
        s.context_switches,
        s.boot_time,
        s.forks,
        s.running.max(1),
        s.softirq * 10,
        s.softirq * 4,
        s.softirq * 6,
    );
}

/// Machine-wide numbers for `/proc/stat` and `/proc/uptime`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTotals {
    pub ncpus: u64,
    pub boot_time: u64,
    /// Ticks.
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub softirq: u64,
    pub interrupts: u64,
    pub context_switches: u64,
    pub forks: u64,
    pub running: u64,
    /// Uptime in ticks.
    pub uptime_ticks: u64,
    pub hz: u64,
}

/// `/proc/uptime`: seconds up, and seconds all CPUs were idle.
pub fn uptime(out: &mut Vec<u8>, s: &SystemTotals) {
    out.clear();
    let hz = s.hz.max(1);
    let _ = writeln!(
        out,
        "{}.{:02} {}.{:02}",
        s.uptime_ticks / hz,
        s.uptime_ticks % hz * 100 / hz,
        s.idle / hz,
        s.idle % hz * 100 / hz
    );
}
