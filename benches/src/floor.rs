//! The floor: the least work any `/proc` reader must do to collect what the
//! procfs receiver collects with its default metrics.
//!
//! For every PID in `/proc` it opens, reads and closes `PID/stat` and
//! `PID/io` — the two files the default metrics need — into one reused
//! buffer, and does nothing with the bytes: no parsing, no allocation, no
//! metric model. A receiver can only approach this; the ratio between the
//! two is what the receiver's own work costs per process.
//!
//! It uses the cheapest syscalls for the job, so that the comparison is
//! against a real floor rather than a slow strawman: `getdents64` into a
//! reused buffer to list PIDs, `openat` relative to a `/proc` descriptor with
//! a hand-built relative path, and a single `read` per file (procfs returns a
//! whole stat or io record in one read when the buffer is big enough).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// PIDs listed in `/proc`.
    pub processes: usize,
    /// Files read successfully.
    pub files: usize,
    /// Bytes read, so the optimiser cannot drop the reads.
    pub bytes: usize,
}

/// The floor reader over one `/proc`.
pub struct Floor {
    proc_dir: OwnedFd,
    dirents: Vec<u8>,
    pids: Vec<u32>,
    path: Vec<u8>,
    buf: Vec<u8>,
}

/// `d_reclen` and `d_name` offsets in `struct linux_dirent64`.
const RECLEN_AT: usize = 16;
const NAME_AT: usize = 19;

impl Floor {
    pub fn new(proc: &Path) -> io::Result<Floor> {
        let dir = File::open(proc)?;
        Ok(Floor {
            proc_dir: dir.into(),
            dirents: vec![0; 32 * 1024],
            pids: Vec::with_capacity(4096),
            path: Vec::with_capacity(32),
            buf: vec![0; 4096],
        })
    }

    /// One pass over every process.
    pub fn pass(&mut self) -> io::Result<Pass> {
        self.list_pids()?;
        let mut pass = Pass {
            processes: self.pids.len(),
            ..Pass::default()
        };
        for i in 0..self.pids.len() {
            let pid = self.pids[i];
            for file in [c"stat", c"io"] {
                if let Some(n) = self.read(pid, file) {
                    pass.files += 1;
                    pass.bytes += n;
                }
            }
        }
        Ok(pass)
    }

    fn list_pids(&mut self) -> io::Result<()> {
        self.pids.clear();
        // SAFETY: "." is NUL-terminated; the proc descriptor is open.
        let fd = unsafe {
            libc::openat(
                self.proc_dir.as_raw_fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        loop {
            // SAFETY: the kernel writes at most `len` bytes into `dirents`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    self.dirents.as_mut_ptr(),
                    self.dirents.len(),
                )
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            if n == 0 {
                return Ok(());
            }
            let mut at = 0;
            while at + NAME_AT <= n {
                let reclen = usize::from(u16::from_ne_bytes([
                    self.dirents[at + RECLEN_AT],
                    self.dirents[at + RECLEN_AT + 1],
                ]));
                if reclen <= NAME_AT || at + reclen > n {
                    break;
                }
                let name = &self.dirents[at + NAME_AT..at + reclen];
                let mut pid: u32 = 0;
                let mut digits = 0;
                for &b in name.iter().take_while(|&&b| b != 0) {
                    if !b.is_ascii_digit() {
                        digits = 0;
                        break;
                    }
                    pid = pid.wrapping_mul(10).wrapping_add(u32::from(b - b'0'));
                    digits += 1;
                }
                if digits > 0 {
                    self.pids.push(pid);
                }
                at += reclen;
            }
        }
    }

    /// Read `PID/file` in one `read`; the byte count, or `None` if it failed.
    fn read(&mut self, pid: u32, file: &CStr) -> Option<usize> {
        self.path.clear();
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
        self.path.extend_from_slice(&digits[start..]);
        self.path.push(b'/');
        self.path.extend_from_slice(file.to_bytes_with_nul());
        // SAFETY: `path` ends with the NUL copied from `file` and has no other.
        let fd = unsafe {
            libc::openat(
                self.proc_dir.as_raw_fd(),
                self.path.as_ptr().cast(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor nothing else owns (closed on drop).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `buf` is initialised and `len` bytes long.
        let n = unsafe { libc::read(fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len()) };
        usize::try_from(n).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_and_io_of_every_process() {
        let mut floor = Floor::new(Path::new("/proc")).expect("/proc");
        let pass = floor.pass().expect("pass");
        assert!(floor.pids.contains(&std::process::id()));
        assert!(floor.pids.contains(&1));
        assert!(pass.processes >= 2);
        // Our own stat and io at least; usually every file of every process.
        assert!(pass.files >= 2 && pass.files <= 2 * pass.processes);
        assert!(pass.bytes > 0);
    }
}
