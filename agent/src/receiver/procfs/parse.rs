//! Pure parsers for the `/proc` files the receiver reads.
//!
//! They run once per process per scrape, so they work in place over the
//! receiver's reused read buffer: no allocation, borrowed slices out, and a
//! [`ParseError`] (never a panic, never an out-of-bounds index) on input that
//! is truncated or not what the kernel writes.

use thiserror::Error;

/// Why a file could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input ends before `field` (or the field is absent altogether).
    #[error("truncated input: {0} missing")]
    Truncated(&'static str),
    /// `field` is present but is not what the kernel writes there.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// The fields of `/proc/PID/stat` the receiver uses (see proc_pid_stat(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat<'a> {
    pub pid: u32,
    /// The command name, as the kernel keeps it (up to 15 bytes, any byte but NUL).
    pub comm: &'a [u8],
    /// The one-letter state (`R`, `S`, `D`, `Z`, ...).
    pub state: u8,
    pub ppid: u32,
    pub flags: u32,
    pub minflt: u64,
    pub majflt: u64,
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Start time after boot, in clock ticks.
    pub starttime: u64,
    /// Virtual memory size, in bytes.
    pub vsize: u64,
    /// Resident set size, in pages (the kernel prints it signed).
    pub rss: i64,
    /// The fields after `rss` (25 on), parsed only on demand.
    rest: &'a [u8],
}

/// `PF_KTHREAD` in the stat `flags` field: the task is a kernel thread.
pub const PF_KTHREAD: u32 = 0x0020_0000;

impl Stat<'_> {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// Field 42, `delayacct_blkio_ticks`: clock ticks spent waiting for
    /// block I/O (0 unless the kernel's delay accounting is on); `None` on
    /// a kernel that does not write it.
    pub fn blkio_ticks(&self) -> Option<u64> {
        let mut fields = Fields::new(self.rest);
        field_u64(&mut fields, 17, "delayacct_blkio_ticks").ok()
    }
}

/// Parse `/proc/PID/stat`.
///
/// `comm` sits between the first `(` and the *last* `)`: a process can name
/// itself `a) (b`, and every field after comm is numeric (or the one-letter
/// state), so the last `)` is the only unambiguous end.
pub fn parse_stat(buf: &[u8]) -> Result<Stat<'_>, ParseError> {
    let open = buf
        .iter()
        .position(|&b| b == b'(')
        .ok_or(ParseError::Truncated("comm"))?;
    let close = buf
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(ParseError::Truncated("comm"))?;
    if close < open {
        return Err(ParseError::Invalid("comm"));
    }
    let pid = parse_u64(trim(&buf[..open])).ok_or(ParseError::Invalid("pid"))?;
    let pid = u32::try_from(pid).map_err(|_| ParseError::Invalid("pid"))?;
    let comm = &buf[open + 1..close];

    // Fields after comm, numbered from 0 = field 3 (state) of proc_pid_stat(5).
    let mut fields = Fields::new(&buf[close + 1..]);
    // The one-letter state: checked, so that a shifted record is caught here.
    let state = match fields.next() {
        Some([state]) => *state,
        Some(_) => return Err(ParseError::Invalid("state")),
        None => return Err(ParseError::Truncated("state")),
    };
    let ppid = field_u64(&mut fields, 0, "ppid")?; // field 4
    let ppid = u32::try_from(ppid).map_err(|_| ParseError::Invalid("ppid"))?;
    let flags = field_u64(&mut fields, 4, "flags")?; // field 9, skipping pgrp..tpgid
    let flags = u32::try_from(flags).map_err(|_| ParseError::Invalid("flags"))?;
    let minflt = field_u64(&mut fields, 0, "minflt")?; // 10
    let majflt = field_u64(&mut fields, 1, "majflt")?; // 12, skipping cminflt
    let utime = field_u64(&mut fields, 1, "utime")?; // 14, skipping cmajflt
    let stime = field_u64(&mut fields, 0, "stime")?; // 15
    let num_threads = field_u64(&mut fields, 4, "num_threads")?; // 20, skipping cutime..nice
    let starttime = field_u64(&mut fields, 1, "starttime")?; // 22, skipping itrealvalue
    let vsize = field_u64(&mut fields, 0, "vsize")?; // 23
    let rss = match fields.next() {
        Some(f) => parse_i64(f).ok_or(ParseError::Invalid("rss"))?,
        None => return Err(ParseError::Truncated("rss")),
    }; // 24
    Ok(Stat {
        pid,
        comm,
        state,
        ppid,
        flags,
        minflt,
        majflt,
        utime,
        stime,
        num_threads,
        starttime,
        vsize,
        rss,
        rest: fields.rest,
    })
}

/// Skip `skip` fields, then parse the next one as an unsigned number.
fn field_u64(fields: &mut Fields<'_>, skip: usize, name: &'static str) -> Result<u64, ParseError> {
    for _ in 0..skip {
        fields.next().ok_or(ParseError::Truncated(name))?;
    }
    let f = fields.next().ok_or(ParseError::Truncated(name))?;
    parse_u64(f).ok_or(ParseError::Invalid(name))
}

/// Whitespace-separated fields of a byte string, without allocating.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Fields { rest }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = &self.rest[start..];
        let end = rest
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (field, tail) = rest.split_at(end);
        self.rest = tail;
        Some(field)
    }
}

/// The byte counters of `/proc/PID/io` that `process.disk.io` reports
/// (bytes that reached the storage layer, not `rchar`/`wchar`, which count
/// reads served from the page cache and pipes too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Io {
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Read and write system calls (`syscr`, `syscw`): what the Collector
    /// reports as disk operations. `None` where the file lacks them.
    pub read_ops: Option<u64>,
    pub write_ops: Option<u64>,
}

/// Parse `/proc/PID/io`.
pub fn parse_io(buf: &[u8]) -> Result<Io, ParseError> {
    Ok(Io {
        read_bytes: keyed_u64(buf, b"read_bytes", "read_bytes")?,
        write_bytes: keyed_u64(buf, b"write_bytes", "write_bytes")?,
        read_ops: keyed_u64(buf, b"syscr", "syscr").ok(),
        write_ops: keyed_u64(buf, b"syscw", "syscw").ok(),
    })
}

/// Context switches from `/proc/PID/status` (the only thing stat lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSwitches {
    pub voluntary: u64,
    pub involuntary: u64,
}

/// Parse the context-switch lines of `/proc/PID/status`.
pub fn parse_status_context_switches(buf: &[u8]) -> Result<ContextSwitches, ParseError> {
    Ok(ContextSwitches {
        voluntary: keyed_u64(buf, b"voluntary_ctxt_switches", "voluntary_ctxt_switches")?,
        involuntary: keyed_u64(
            buf,
            b"nonvoluntary_ctxt_switches",
            "nonvoluntary_ctxt_switches",
        )?,
    })
}

/// How many distinct signals are pending for a process: the union of the
/// thread-directed (`SigPnd`) and process-wide (`ShdPnd`) masks of
/// `/proc/PID/status`, one bit per signal.
pub fn parse_status_signals_pending(buf: &[u8]) -> Result<u64, ParseError> {
    let mask = |key: &[u8], name| {
        let value = keyed(buf, key).ok_or(ParseError::Truncated(name))?;
        parse_hex(value).ok_or(ParseError::Invalid(name))
    };
    let pending = mask(b"SigPnd", "SigPnd")? | mask(b"ShdPnd", "ShdPnd")?;
    Ok(u64::from(pending.count_ones()))
}

/// What `/proc/PID/smaps_rollup` sums over every mapping, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollup {
    pub pss: u64,
    /// `Private_Clean + Private_Dirty + Private_Hugetlb`: what exiting frees.
    pub uss: u64,
    pub swap: u64,
}

/// Parse `/proc/PID/smaps_rollup` (`Key:   123 kB` lines). A process
/// without memory (a kernel thread, a zombie) has an empty file: zeros.
pub fn parse_smaps_rollup(buf: &[u8]) -> Result<Rollup, ParseError> {
    let mut rollup = Rollup::default();
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let slot = match key {
            b"Pss" => &mut rollup.pss,
            b"Swap" => &mut rollup.swap,
            b"Private_Clean" | b"Private_Dirty" | b"Private_Hugetlb" => &mut rollup.uss,
            _ => continue,
        };
        let kib = kib_value(rest).ok_or(ParseError::Invalid("smaps_rollup"))?;
        *slot = slot.saturating_add(kib.saturating_mul(1024));
    }
    Ok(rollup)
}

/// The soft limit of `Max open files` in `/proc/PID/limits`; `Ok(None)`
/// when it is `unlimited`.
pub fn parse_limits_nofile(buf: &[u8]) -> Result<Option<u64>, ParseError> {
    const NAME: &str = "Max open files";
    for line in buf.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"Max open files") {
            let soft = Fields::new(rest)
                .next()
                .ok_or(ParseError::Truncated(NAME))?;
            if soft == b"unlimited" {
                return Ok(None);
            }
            return parse_u64(soft).map(Some).ok_or(ParseError::Invalid(NAME));
        }
    }
    Err(ParseError::Truncated(NAME))
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(buf: &[u8]) -> Result<u64, ParseError> {
    let value = keyed(buf, b"MemTotal").ok_or(ParseError::Truncated("MemTotal"))?;
    let kib = kib_value(value).ok_or(ParseError::Invalid("MemTotal"))?;
    Ok(kib.saturating_mul(1024))
}

/// `processes` of `/proc/stat`: forks since boot.
pub fn parse_processes_created(buf: &[u8]) -> Result<u64, ParseError> {
    stat_line_u64(buf, b"processes", "processes")
}

/// `123 kB` (or a bare number) to its number.
fn kib_value(s: &[u8]) -> Option<u64> {
    let mut fields = Fields::new(s);
    let number = parse_u64(fields.next()?)?;
    match fields.next() {
        None | Some(b"kB") => Some(number),
        Some(_) => None,
    }
}

/// Hexadecimal digits (a signal mask) to a u64.
fn parse_hex(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let digit = char::from(b).to_digit(16)?;
        v = (v << 4) | u64::from(digit);
    }
    Some(v)
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_boot_time(buf: &[u8]) -> Result<u64, ParseError> {
    stat_line_u64(buf, b"btime", "btime")
}

/// The number of the `/proc/stat` line `key N`.
fn stat_line_u64(buf: &[u8], key: &[u8], name: &'static str) -> Result<u64, ParseError> {
    for line in buf.split(|&b| b == b'\n') {
        let mut fields = Fields::new(line);
        if fields.next() == Some(key) {
            let value = fields.next().ok_or(ParseError::Truncated(name))?;
            return parse_u64(value).ok_or(ParseError::Invalid(name));
        }
    }
    Err(ParseError::Truncated(name))
}

/// The value of the `key: value` line (io, status) whose key is `key`.
fn keyed_u64(buf: &[u8], key: &[u8], name: &'static str) -> Result<u64, ParseError> {
    let value = keyed(buf, key).ok_or(ParseError::Truncated(name))?;
    parse_u64(trim(value)).ok_or(ParseError::Invalid(name))
}

/// What follows `key:` on its line, untrimmed.
fn keyed<'a>(buf: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    buf.split(|&b| b == b'\n').find_map(|line| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(b":"))
    })
}

/// The arguments of `/proc/PID/cmdline`: NUL-separated, with a final NUL.
///
/// An empty file (kernel threads, zombies) has no arguments. A process that
/// overwrote its argv with one space-separated string (postgres, nginx
/// workers) yields that one string.
pub fn cmdline_args(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    // `split` on an empty slice yields one empty piece; an empty cmdline has none.
    let pieces = if body.is_empty() { None } else { Some(body) };
    pieces.into_iter().flat_map(|b| b.split(|&c| c == 0))
}

/// One `/etc/passwd` entry: the name and uid, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a [u8],
    pub uid: u32,
}

/// The entries of an `/etc/passwd` file (`name:password:uid:gid:...`).
/// Lines that are not entries (comments, blanks, NIS `+`/`-` lines, a bad
/// uid) are skipped: one bad line must not hide every other user.
pub fn passwd_entries(buf: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    buf.split(|&b| b == b'\n').filter_map(|line| {
        let mut cols = line.split(|&b| b == b':');
        let name = cols.next()?;
        if name.is_empty() || name[0] == b'#' || name[0] == b'+' || name[0] == b'-' {
            return None;
        }
        let _password = cols.next()?;
        let uid = parse_u64(cols.next()?)?;
        Some(PasswdEntry {
            name,
            uid: u32::try_from(uid).ok()?,
        })
    })
}

/// The names in a buffer of `linux_dirent64` records as `getdents64(2)`
/// fills it. Stops at the first malformed record (a zero or overlong
/// length), so a bad buffer can never loop or read out of bounds.
pub fn dirent_names(buf: &[u8]) -> DirentNames<'_> {
    DirentNames { rest: buf }
}

/// Iterator returned by [`dirent_names`].
pub struct DirentNames<'a> {
    rest: &'a [u8],
}

/// Offset of `d_name` in `struct linux_dirent64` (ino u64, off i64, reclen u16, type u8).
const DIRENT_NAME_OFFSET: usize = 19;
/// Offset of `d_reclen`.
const DIRENT_RECLEN_OFFSET: usize = 16;

impl<'a> Iterator for DirentNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len_bytes = self
            .rest
            .get(DIRENT_RECLEN_OFFSET..DIRENT_RECLEN_OFFSET + 2)?;
        let reclen = usize::from(u16::from_ne_bytes([len_bytes[0], len_bytes[1]]));
        if reclen <= DIRENT_NAME_OFFSET || reclen > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let (record, tail) = self.rest.split_at(reclen);
        self.rest = tail;
        let name = &record[DIRENT_NAME_OFFSET..];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(&name[..end])
    }
}

/// A directory name that is a PID (all digits, fits a u32, not 0).
pub fn parse_pid(name: &[u8]) -> Option<u32> {
    let v = parse_u64(name)?;
    u32::try_from(v).ok().filter(|&p| p != 0)
}

/// Decimal digits to a u64; `None` on anything else, an empty input or overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// An optionally `-`-signed decimal to an i64.
fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(digits) => {
            let v = parse_u64(digits)?;
            // -(i64::MIN) does not fit an i64, so go through i128.
            i64::try_from(-i128::from(v)).ok()
        }
        None => i64::try_from(parse_u64(s)?).ok(),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real line from a 6.x kernel (systemd's `(sd-pam)`), fields 1..52.
    const SD_PAM: &[u8] = b"1234 ((sd-pam)) S 1233 1233 1233 0 -1 4194624 52 0 0 0 7 3 0 0 20 0 1 0 4521 22749184 1024 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    fn stat_line(comm: &str, flags: u32) -> Vec<u8> {
        format!(
            "77 ({comm}) R 1 77 77 0 -1 {flags} 11 0 22 0 345 67 0 0 20 0 4 0 98765 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
        .into_bytes()
    }

    #[test]
    fn stat_fields_land_where_proc_5_says() {
        let s = parse_stat(SD_PAM).expect("valid stat");
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, b"(sd-pam)");
        assert_eq!(s.ppid, 1233);
        assert_eq!(s.flags, 4194624);
        assert_eq!(s.minflt, 52);
        assert_eq!(s.majflt, 0);
        assert_eq!(s.utime, 7);
        assert_eq!(s.stime, 3);
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime, 4521);
        assert_eq!(s.vsize, 22749184);
        assert_eq!(s.rss, 1024);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn comm_with_spaces_and_parens_ends_at_last_paren() {
        for comm in ["a) (b", "my prog", "x)", "((", ") ) )", ""] {
            let line = stat_line(comm, 0);
            let s = parse_stat(&line).expect(comm);
            assert_eq!(s.comm, comm.as_bytes());
            assert_eq!(s.ppid, 1, "{comm}");
            assert_eq!(s.minflt, 11);
            assert_eq!(s.majflt, 22);
            assert_eq!(s.utime, 345);
            assert_eq!(s.stime, 67);
            assert_eq!(s.num_threads, 4);
            assert_eq!(s.starttime, 98765);
            assert_eq!(s.vsize, 123456789);
            assert_eq!(s.rss, 2500);
        }
    }

    #[test]
    fn kernel_thread_flag_is_detected() {
        // kthreadd on a 6.x kernel: flags = PF_KTHREAD | PF_NOFREEZE | ...
        let kthreadd = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = parse_stat(kthreadd).expect("kthreadd");
        assert!(s.is_kernel_thread());
        assert_eq!(s.ppid, 0);
        assert_eq!(s.rss, 0);
        assert!(
            !parse_stat(&stat_line("bash", 0x0040_0100))
                .unwrap()
                .is_kernel_thread()
        );
    }

    #[test]
    fn truncated_and_garbage_stat_are_clean_errors() {
        let full = stat_line("cat", 0);
        // Every prefix that stops before rss must fail, none may panic.
        let rss_end = full.len()
            - " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
                .len();
        for cut in 0..rss_end - 4 {
            assert!(parse_stat(&full[..cut]).is_err(), "prefix of {cut} bytes");
        }
        assert_eq!(parse_stat(b""), Err(ParseError::Truncated("comm")));
        assert_eq!(parse_stat(b"12 (x"), Err(ParseError::Truncated("comm")));
        assert_eq!(parse_stat(b"12 )x( R"), Err(ParseError::Invalid("comm")));
        assert_eq!(parse_stat(b"12 (x) R"), Err(ParseError::Truncated("ppid")));
        assert_eq!(parse_stat(b"zz (x) R 1"), Err(ParseError::Invalid("pid")));
        assert_eq!(
            parse_stat(b"12 (x) RR 1"),
            Err(ParseError::Invalid("state"))
        );
        assert_eq!(parse_stat(b"12 (x) R -1"), Err(ParseError::Invalid("ppid")));
        let garbage = b"12 (x) R 1 2 3 4 5 6 7 8 9 10 ten 12 13 14 15 16 17 18 19 20 21";
        assert_eq!(parse_stat(garbage), Err(ParseError::Invalid("utime")));
        let overflow = b"12 (x) R 1 2 3 4 5 6 7 8 9 10 99999999999999999999 12";
        assert_eq!(parse_stat(overflow), Err(ParseError::Invalid("utime")));
    }

    #[test]
    fn negative_rss_parses_signed() {
        let line = b"9 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 -3\n";
        assert_eq!(parse_stat(line).map(|s| s.rss), Ok(-3));
    }

    #[test]
    fn io_reads_storage_bytes_not_rchar() {
        let io = b"rchar: 111\nwchar: 222\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(io),
            Ok(Io {
                read_bytes: 4096,
                write_bytes: 8192,
                read_ops: Some(3),
                write_ops: Some(4),
            })
        );
        assert_eq!(
            parse_io(b"rchar: 1\nread_bytes: 4"),
            Err(ParseError::Truncated("write_bytes"))
        );
        assert_eq!(
            parse_io(b"read_bytes: x\nwrite_bytes: 1\n"),
            Err(ParseError::Invalid("read_bytes"))
        );
        assert_eq!(parse_io(b""), Err(ParseError::Truncated("read_bytes")));
    }

    #[test]
    fn status_context_switches() {
        let status = b"Name:\tbash\nState:\tS (sleeping)\nThreads:\t1\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(
            parse_status_context_switches(status),
            Ok(ContextSwitches {
                voluntary: 150,
                involuntary: 7
            })
        );
        assert_eq!(
            parse_status_context_switches(b"Name:\tbash\nvoluntary_ctxt_switches:\t1\n"),
            Err(ParseError::Truncated("nonvoluntary_ctxt_switches"))
        );
    }

    #[test]
    fn boot_time_from_proc_stat() {
        let stat = b"cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\nctxt 99\nbtime 1700000000\nprocesses 42\n";
        assert_eq!(parse_boot_time(stat), Ok(1_700_000_000));
        assert_eq!(
            parse_boot_time(b"cpu 1\n"),
            Err(ParseError::Truncated("btime"))
        );
        assert_eq!(
            parse_boot_time(b"btime soon\n"),
            Err(ParseError::Invalid("btime"))
        );
        // `btimex` is not `btime`.
        assert_eq!(
            parse_boot_time(b"btimex 5\n"),
            Err(ParseError::Truncated("btime"))
        );
    }

    #[test]
    fn cmdline_splits_on_nul() {
        let args: Vec<&[u8]> = cmdline_args(b"/bin/sleep\x00600\0\0x\0").collect();
        assert_eq!(args, [&b"/bin/sleep"[..], b"600", b"", b"x"]);
        assert_eq!(cmdline_args(b"").count(), 0);
        assert_eq!(cmdline_args(b"\0").count(), 0);
        let rewritten: Vec<&[u8]> = cmdline_args(b"postgres: checkpointer   ").collect();
        assert_eq!(rewritten, [&b"postgres: checkpointer   "[..]]);
    }

    #[test]
    fn passwd_skips_what_is_not_an_entry() {
        let passwd = b"root:x:0:0:root:/root:/bin/bash\n# comment\n\n+nis\nbad:x:notanumber:0::/:/bin/sh\ndaemon:x:1:1::/:/usr/sbin/nologin\nshort:x\nbig:x:99999999999:0::/:/bin/sh";
        let entries: Vec<PasswdEntry<'_>> = passwd_entries(passwd).collect();
        assert_eq!(
            entries,
            [
                PasswdEntry {
                    name: b"root",
                    uid: 0
                },
                PasswdEntry {
                    name: b"daemon",
                    uid: 1
                }
            ]
        );
    }

    fn dirent(name: &[u8]) -> Vec<u8> {
        // ino, off, reclen, type, name, NUL, padded to 8 like the kernel does.
        let len = (DIRENT_NAME_OFFSET + name.len() + 1).div_ceil(8) * 8;
        let mut rec = vec![0u8; len];
        rec[DIRENT_RECLEN_OFFSET..DIRENT_RECLEN_OFFSET + 2]
            .copy_from_slice(&u16::try_from(len).unwrap().to_ne_bytes());
        rec[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + name.len()].copy_from_slice(name);
        rec
    }

    #[test]
    fn dirents_and_pids() {
        let mut buf = Vec::new();
        for n in [&b"."[..], b"..", b"1", b"self", b"4242", b"4294967296"] {
            buf.extend(dirent(n));
        }
        let pids: Vec<u32> = dirent_names(&buf).filter_map(parse_pid).collect();
        assert_eq!(pids, [1, 4242]);
        // A zero record length stops the walk instead of looping.
        let mut bad = dirent(b"7");
        bad[DIRENT_RECLEN_OFFSET] = 0;
        bad[DIRENT_RECLEN_OFFSET + 1] = 0;
        assert_eq!(dirent_names(&bad).count(), 0);
        assert_eq!(parse_pid(b"0"), None);
        assert_eq!(parse_pid(b""), None);
    }

    #[test]
    fn stat_state_and_blkio_ticks() {
        let s = parse_stat(SD_PAM).expect("real line");
        assert_eq!(s.state, b'S');
        assert_eq!(s.blkio_ticks(), Some(0));
        // Field 42 set, the fields after it present as the kernel writes them.
        let mut fields: Vec<String> = (1..=52).map(|n| n.to_string()).collect();
        fields[1] = "(x)".into();
        fields[2] = "D".into();
        fields[41] = "314".into();
        let line = fields.join(" ");
        let s = parse_stat(line.as_bytes()).expect("synthetic line");
        assert_eq!(s.state, b'D');
        assert_eq!(s.blkio_ticks(), Some(314));
        // An old kernel's shorter record: no field 42, no wait point.
        let short = &fields[..41].join(" ");
        assert_eq!(
            parse_stat(short.as_bytes()).expect("short").blkio_ticks(),
            None
        );
    }

    #[test]
    fn io_operations_are_optional() {
        let full = b"rchar: 1\nwchar: 2\nsyscr: 30\nsyscw: 40\nread_bytes: 5\nwrite_bytes: 6\ncancelled_write_bytes: 0\n";
        let io = parse_io(full).expect("full");
        assert_eq!((io.read_ops, io.write_ops), (Some(30), Some(40)));
        let io = parse_io(b"read_bytes: 5\nwrite_bytes: 6\n").expect("bytes only");
        assert_eq!((io.read_bytes, io.read_ops), (5, None));
    }

    #[test]
    fn pending_signals_count_the_union_of_both_masks() {
        let status = |sig: &str, shd: &str| {
            format!(
                "Name:\tx\nSigQ:\t2/63\nSigPnd:\t{sig}\nShdPnd:\t{shd}\nSigBlk:\tffffffffffffffff\n"
            )
        };
        let count = |sig, shd| parse_status_signals_pending(status(sig, shd).as_bytes());
        assert_eq!(count("0000000000000000", "0000000000000000"), Ok(0));
        // SIGTERM (15) process-wide, SIGUSR1 (10) on a thread and process-wide.
        assert_eq!(count("0000000000000200", "0000000000004200"), Ok(2));
        assert_eq!(count("ffffffffffffffff", "0"), Ok(64));
        assert!(count("xyz", "0").is_err());
        assert!(count("10000000000000000", "0").is_err(), "17 digits");
        assert!(parse_status_signals_pending(b"Name:\tx\n").is_err());
    }

    #[test]
    fn smaps_rollup_sums_private_memory() {
        let text =
            b"55d0c1a5e000-7ffd8a3f2000 ---p 00000000 00:00 0                          [rollup]\n\
Rss:                4096 kB\nPss:                2048 kB\nPss_Anon:           1024 kB\n\
Shared_Clean:       1024 kB\nPrivate_Clean:       512 kB\nPrivate_Dirty:      1536 kB\n\
Private_Hugetlb:       0 kB\nSwap:                 64 kB\nSwapPss:              32 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Ok(Rollup {
                pss: 2048 * 1024,
                uss: 2048 * 1024,
                swap: 64 * 1024
            })
        );
        assert_eq!(parse_smaps_rollup(b""), Ok(Rollup::default()));
        assert!(parse_smaps_rollup(b"Pss: lots kB\n").is_err());
        assert!(parse_smaps_rollup(b"Pss: 1 MB\n").is_err());
    }

    #[test]
    fn nofile_soft_limit() {
        let limits =
            b"Limit                     Soft Limit           Hard Limit           Units     \n\
Max processes             63321                63321                processes \n\
Max open files            1024                 524288               files     \n";
        assert_eq!(parse_limits_nofile(limits), Ok(Some(1024)));
        assert_eq!(
            parse_limits_nofile(
                b"Max open files            unlimited            unlimited            files\n"
            ),
            Ok(None)
        );
        assert!(parse_limits_nofile(b"Max processes 1 1 processes\n").is_err());
        assert!(parse_limits_nofile(b"Max open files            many   2 files\n").is_err());
    }

    #[test]
    fn host_files() {
        assert_eq!(
            parse_mem_total(b"MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Ok(24_576_000 * 1024)
        );
        assert!(parse_mem_total(b"MemFree: 1 kB\n").is_err());
        let stat = b"cpu  1 2 3\nctxt 99\nbtime 1700000000\nprocesses 123456\nprocs_running 2\n";
        assert_eq!(parse_processes_created(stat), Ok(123_456));
        assert_eq!(parse_boot_time(stat), Ok(1_700_000_000));
        assert!(parse_processes_created(b"cpu 1\n").is_err());
    }

    proptest! {
        #[test]
        fn no_parser_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_stat(&bytes);
            let _ = parse_io(&bytes);
            let _ = parse_status_context_switches(&bytes);
            let _ = parse_boot_time(&bytes);
            let _ = parse_status_signals_pending(&bytes);
            let _ = parse_smaps_rollup(&bytes);
            let _ = parse_limits_nofile(&bytes);
            let _ = parse_mem_total(&bytes);
            let _ = parse_processes_created(&bytes);
            if let Ok(s) = parse_stat(&bytes) {
                let _ = s.blkio_ticks();
            }
            let _ = cmdline_args(&bytes).count();
            let _ = passwd_entries(&bytes).count();
            let _ = dirent_names(&bytes).filter_map(parse_pid).count();
            let _ = parse_u64(&bytes);
            let _ = parse_i64(&bytes);
        }

        #[test]
        fn stat_comm_round_trips(comm in proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..16),
                                 utime in any::<u64>(), rss in any::<i64>()) {
            let mut line = b"5 (".to_vec();
            line.extend(&comm);
            line.extend(format!(") S 1 5 5 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0 10 4096 {rss} 0\n").as_bytes());
            let s = parse_stat(&line).expect("generated stat parses");
            prop_assert_eq!(s.comm, &comm[..]);
            prop_assert_eq!(s.utime, utime);
            prop_assert_eq!(s.rss, rss);
        }

        #[test]
        fn every_truncation_of_a_valid_stat_is_handled(cut in 0usize..200) {
            let line = stat_line("a) (b", PF_KTHREAD);
            let cut = cut.min(line.len());
            let _ = parse_stat(&line[..cut]);
        }
    }
}
