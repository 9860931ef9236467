//! The few syscalls the receiver's hot path needs, behind safe wrappers.
//!
//! Everything is relative to one directory descriptor for `<root>/proc`, so a
//! read costs `openat` + `read` + `close` with a short relative path ("4242/stat")
//! instead of resolving the whole path from `/` through a freshly formatted
//! `PathBuf` every time, and directory listings go through `getdents64` into a
//! reused buffer instead of `std::fs::read_dir`, which allocates per entry.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::parse::{dirent_names, parse_pid};

/// Why a per-process read failed, in the terms the receiver counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The process exited (ENOENT, ESRCH): normal churn.
    Vanished,
    /// Not ours to read (EACCES, EPERM): normal when the agent is not root.
    PermissionDenied,
    /// Anything else (EIO, EMFILE, ...): the file could not be read.
    Unreadable,
}

impl ReadError {
    pub fn classify(e: &io::Error) -> ReadError {
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH) => ReadError::Vanished,
            Some(libc::EACCES | libc::EPERM) => ReadError::PermissionDenied,
            _ => ReadError::Unreadable,
        }
    }
}

/// What `fstatat` tells the receiver about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub uid: u32,
    pub size: u64,
}

/// Size of the `getdents64` buffer: /proc with a thousand processes lists in
/// two or three calls.
const DIRENT_BUF_LEN: usize = 32 * 1024;
/// First size of a file read buffer: every stat/io/status file fits in it.
const MIN_READ_LEN: usize = 4096;
/// `/proc/PID/exe` targets are paths; past this the link is not worth reading.
const MAX_LINK_LEN: usize = 64 * 1024;

/// An open directory that files are read relative to.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Dir { fd: file.into() })
    }

    /// Whether this directory is a procfs mount (and not, say, a test
    /// fixture), which decides whether `st_size` of `PID/fd` means anything.
    pub fn is_procfs(&self) -> bool {
        let mut st = MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: the descriptor is open for the lifetime of `self`, and `st`
        // is a properly sized out-parameter that is only read if the call succeeds.
        let rc = unsafe { libc::fstatfs(self.fd.as_raw_fd(), st.as_mut_ptr()) };
        if rc != 0 {
            return false;
        }
        // SAFETY: fstatfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        st.f_type == libc::PROC_SUPER_MAGIC
    }

    fn open_at(&self, rel: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
        loop {
            // SAFETY: `rel` is NUL-terminated and outlives the call; the
            // directory descriptor is open.
            let fd = unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    rel.as_ptr(),
                    flags | libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: openat returned a fresh descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Replace `buf`'s content with the whole file `rel`.
    ///
    /// procfs builds a stat/io/status/cmdline record in one go, so a read
    /// that leaves room in the buffer has returned all of it: stopping there
    /// saves the extra `read` that would only return 0 (for regular files,
    /// as in test fixtures, a short read at the end is the end too).
    pub fn read_at(&self, rel: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        let fd = self.open_at(rel, 0)?;
        loop {
            if buf.capacity() == buf.len() {
                buf.reserve(buf.capacity().max(MIN_READ_LEN));
            }
            let spare = buf.spare_capacity_mut();
            let asked = spare.len();
            // SAFETY: the pointer and length describe `buf`'s unused capacity,
            // which the kernel may write; nothing else aliases it.
            let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), asked) };
            let n = match usize::try_from(n) {
                Ok(n) => n,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
            };
            // SAFETY: read() initialised exactly `n <= asked` bytes past the length.
            unsafe { buf.set_len(buf.len() + n) };
            if n < asked {
                return Ok(());
            }
        }
    }

    /// Replace `buf`'s content with the target of the symlink `rel`.
    pub fn readlink_at(&self, rel: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        buf.reserve(256);
        loop {
            let spare = buf.spare_capacity_mut();
            let asked = spare.len();
            // SAFETY: as in `read_at`: the kernel writes at most `asked`
            // bytes into `buf`'s unused capacity.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    rel.as_ptr(),
                    spare.as_mut_ptr().cast(),
                    asked,
                )
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            if n < asked {
                // SAFETY: readlinkat initialised `n` bytes.
                unsafe { buf.set_len(n) };
                return Ok(());
            }
            // The target filled the buffer: it may be cut, so grow and retry.
            if asked >= MAX_LINK_LEN {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            buf.reserve(asked * 2);
        }
    }

    /// Owner and size of `rel` (without following a final symlink).
    pub fn stat_at(&self, rel: &CStr) -> io::Result<FileStat> {
        let mut st = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `rel` is NUL-terminated, `st` is a correctly sized
        // out-parameter read only on success.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                rel.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        Ok(FileStat {
            uid: st.st_uid,
            size: u64::try_from(st.st_size).unwrap_or(0),
        })
    }

    /// The PIDs listed in this directory, into `pids` (cleared first);
    /// `scratch` is the reused `getdents64` buffer.
    pub fn list_pids(&self, scratch: &mut Vec<u8>, pids: &mut Vec<u32>) -> io::Result<()> {
        pids.clear();
        let dir = self.open_at(c".", libc::O_DIRECTORY)?;
        for_each_dirent(&dir, scratch, |name| {
            if let Some(pid) = parse_pid(name) {
                pids.push(pid);
            }
        })
    }

    /// The number of entries of directory `rel`, `.` and `..` excluded.
    pub fn count_entries_at(&self, rel: &CStr, scratch: &mut Vec<u8>) -> io::Result<u64> {
        let dir = self.open_at(rel, libc::O_DIRECTORY)?;
        let mut n = 0;
        for_each_dirent(&dir, scratch, |name| {
            if name != b"." && name != b".." {
                n += 1;
            }
        })?;
        Ok(n)
    }
}

/// Call `f` with the name of every entry of the open directory `dir`.
fn for_each_dirent(
    dir: &OwnedFd,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    scratch.clear();
    scratch.reserve(DIRENT_BUF_LEN);
    loop {
        let spare = scratch.spare_capacity_mut();
        let asked = spare.len().min(DIRENT_BUF_LEN);
        // SAFETY: getdents64 writes at most `asked` bytes of dirent records
        // into `scratch`'s unused capacity, which nothing else aliases.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                spare.as_mut_ptr(),
                asked,
            )
        };
        let n = match usize::try_from(n) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
        };
        // SAFETY: the kernel initialised `n <= asked` bytes.
        unsafe { scratch.set_len(n) };
        for name in dirent_names(scratch) {
            f(name);
        }
        scratch.clear();
    }
}

/// A reused `PID/file` path relative to the proc directory, so that building
/// one costs a few byte copies and no allocation or formatting machinery.
#[derive(Debug, Default)]
pub struct PidPath {
    buf: Vec<u8>,
    base: usize,
}

impl PidPath {
    /// Point at the directory of `pid` (`"4242/"`).
    pub fn set_pid(&mut self, pid: u32) {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        let mut v = pid;
        loop {
            start -= 1;
            digits[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.clear();
        self.buf.extend_from_slice(&digits[start..]);
        self.buf.push(b'/');
        self.base = self.buf.len();
    }

    /// `"PID/<name>"`; `c""` gives the process directory itself.
    pub fn file(&mut self, name: &CStr) -> &CStr {
        self.buf.truncate(self.base);
        self.buf.extend_from_slice(name.to_bytes_with_nul());
        // Digits, '/', and a CStr's bytes: the only NUL is the last byte, so
        // this cannot fail; the fallback names nothing rather than panicking.
        CStr::from_bytes_with_nul(&self.buf).unwrap_or(c"")
    }
}

/// The kernel's host name (`gethostname(2)`).
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_paths() {
        let mut p = PidPath::default();
        p.set_pid(4242);
        assert_eq!(p.file(c"stat"), c"4242/stat");
        assert_eq!(p.file(c"io"), c"4242/io");
        assert_eq!(p.file(c""), c"4242/");
        p.set_pid(0);
        assert_eq!(p.file(c"fd"), c"0/fd");
        p.set_pid(u32::MAX);
        assert_eq!(p.file(c"stat"), c"4294967295/stat");
    }

    #[test]
    fn errors_are_classified_by_errno() {
        let c = |errno| ReadError::classify(&io::Error::from_raw_os_error(errno));
        assert_eq!(c(libc::ENOENT), ReadError::Vanished);
        assert_eq!(c(libc::ESRCH), ReadError::Vanished);
        assert_eq!(c(libc::EACCES), ReadError::PermissionDenied);
        assert_eq!(c(libc::EPERM), ReadError::PermissionDenied);
        assert_eq!(c(libc::EIO), ReadError::Unreadable);
        assert_eq!(c(libc::EMFILE), ReadError::Unreadable);
    }

    #[test]
    fn reads_real_proc_files() {
        let proc = Dir::open(Path::new("/proc")).expect("/proc");
        assert!(proc.is_procfs());
        let mut buf = Vec::new();
        let mut path = PidPath::default();
        path.set_pid(std::process::id());
        proc.read_at(path.file(c"stat"), &mut buf)
            .expect("own stat");
        let stat = super::super::parse::parse_stat(&buf).expect("own stat parses");
        assert_eq!(stat.pid, std::process::id());

        // A file larger than the first buffer is read whole.
        let dir = std::env::temp_dir().join(format!("phoenix-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let big: Vec<u8> = (0..3 * MIN_READ_LEN + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.join("big"), &big).expect("write big");
        let read = Dir::open(&dir)
            .and_then(|d| d.read_at(c"big", &mut buf))
            .map(|()| buf.clone());
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
        assert_eq!(read.expect("read big"), big);

        let mut pids = Vec::new();
        proc.list_pids(&mut Vec::new(), &mut pids).expect("list");
        assert!(pids.contains(&std::process::id()));
        assert!(pids.contains(&1));

        proc.readlink_at(path.file(c"exe"), &mut buf)
            .expect("own exe");
        let exe = std::fs::read_link("/proc/self/exe").expect("std readlink");
        assert_eq!(buf, exe.as_os_str().as_encoded_bytes());

        let fds = proc
            .count_entries_at(path.file(c"fd"), &mut Vec::new())
            .expect("fd dir");
        assert!(fds >= 3, "stdin, stdout, stderr and the proc dir: {fds}");

        assert!(!Dir::open(Path::new("/tmp")).expect("/tmp").is_procfs());
        let missing = proc.read_at(c"999999999/stat", &mut buf).unwrap_err();
        assert_eq!(ReadError::classify(&missing), ReadError::Vanished);
    }
}
