//! File operations relative to one open `<root>/proc` directory.
//!
//! A 100,000-process tree is over a million files; each operation goes
//! through `openat`/`mkdirat`/`symlinkat`/`renameat` with a short path
//! relative to the proc directory, built in a reused buffer, instead of
//! resolving a freshly allocated absolute path from `/` every time.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The proc directory of a synthetic tree.
#[derive(Debug)]
pub struct ProcDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Reused NUL-terminated relative paths (two, for rename and symlink).
    a: Vec<u8>,
    b: Vec<u8>,
}

/// Put `parts` joined by '/' and a NUL into `buf`.
fn build<'b>(buf: &'b mut Vec<u8>, parts: &[&[u8]]) -> io::Result<&'b CStr> {
    buf.clear();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(b'/');
        }
        buf.extend_from_slice(part);
    }
    buf.push(0);
    CStr::from_bytes_with_nul(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl ProcDir {
    pub fn open(path: &Path) -> io::Result<ProcDir> {
        let dir = File::open(path)?;
        Ok(ProcDir {
            fd: dir.into(),
            path: path.to_path_buf(),
            a: Vec::with_capacity(64),
            b: Vec::with_capacity(256),
        })
    }

    /// An error that names the file it is about.
    fn fail(&self, what: &str, parts: &[&[u8]]) -> io::Error {
        let e = io::Error::last_os_error();
        let rel: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        io::Error::new(
            e.kind(),
            format!(
                "cannot {what} {}/{}: {e}",
                self.path.display(),
                rel.join("/")
            ),
        )
    }

    pub fn mkdir(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let rel = build(&mut self.a, parts)?;
        // SAFETY: `rel` is NUL-terminated; the directory descriptor is open.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), rel.as_ptr(), 0o755) } != 0 {
            return Err(self.fail("create directory", parts));
        }
        Ok(())
    }

    /// Create or replace the file `parts` with `data`.
    pub fn write(&mut self, parts: &[&[u8]], data: &[u8]) -> io::Result<()> {
        let rel = build(&mut self.a, parts)?;
        let mode: libc::c_uint = 0o644;
        // SAFETY: as in `mkdir`.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                rel.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                mode,
            )
        };
        if fd < 0 {
            return Err(self.fail("create", parts));
        }
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut rest = data;
        while !rest.is_empty() {
            // SAFETY: the pointer and length describe `rest`.
            let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => rest = &rest[n..],
                Err(_) => {
                    if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                        return Err(self.fail("write", parts));
                    }
                }
            }
        }
        Ok(())
    }

    /// Write `data` to `parts` so that a concurrent reader sees the old or
    /// the new content, never an empty or half-written file: write a
    /// sibling temporary, then rename it over the target.
    pub fn replace(&mut self, parts: &[&[u8]], tmp: &[&[u8]], data: &[u8]) -> io::Result<()> {
        self.write(tmp, data)?;
        self.rename(tmp, parts)
    }

    /// A symlink at `parts` pointing at `target`.
    pub fn symlink(&mut self, target: &[u8], parts: &[&[u8]]) -> io::Result<()> {
        let target = build(&mut self.b, &[target])?;
        let rel = build(&mut self.a, parts)?;
        // SAFETY: both paths are NUL-terminated; the descriptor is open.
        if unsafe { libc::symlinkat(target.as_ptr(), self.fd.as_raw_fd(), rel.as_ptr()) } != 0 {
            return Err(self.fail("create symlink", parts));
        }
        Ok(())
    }

    pub fn rename(&mut self, from: &[&[u8]], to: &[&[u8]]) -> io::Result<()> {
        let from_c = build(&mut self.a, from)?;
        let to_c = build(&mut self.b, to)?;
        let fd = self.fd.as_raw_fd();
        // SAFETY: both paths are NUL-terminated; the descriptor is open.
        if unsafe { libc::renameat(fd, from_c.as_ptr(), fd, to_c.as_ptr()) } != 0 {
            return Err(self.fail("rename to", to));
        }
        Ok(())
    }

    /// Give `parts` (a process directory) to `uid`: the receiver takes a
    /// process's owner from its directory's owner, as on the real procfs.
    pub fn chown(&mut self, parts: &[&[u8]], uid: u32) -> io::Result<()> {
        let rel = build(&mut self.a, parts)?;
        // SAFETY: as in `mkdir`.
        let rc = unsafe {
            libc::fchownat(
                self.fd.as_raw_fd(),
                rel.as_ptr(),
                uid,
                uid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(self.fail("change the owner of", parts));
        }
        Ok(())
    }

    /// Remove the directory tree `name` (one level of entries plus `fd/`,
    /// which is all a process directory has).
    pub fn remove_tree(&mut self, name: &[u8]) -> io::Result<()> {
        let path = self.path.join(String::from_utf8_lossy(name).as_ref());
        std::fs::remove_dir_all(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot remove {}: {e}", path.display())))
    }
}

/// Decimal digits of `v` without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub fn new(mut v: u64) -> Digits {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Digits { buf, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits() {
        assert_eq!(Digits::new(0).as_bytes(), b"0");
        assert_eq!(Digits::new(4242).as_bytes(), b"4242");
        assert_eq!(Digits::new(u64::MAX).as_bytes(), b"18446744073709551615");
    }

    #[test]
    fn relative_operations() {
        let root = std::env::temp_dir().join(format!("phoenix-fsio-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("root");
        let mut d = ProcDir::open(&root).expect("open");
        d.mkdir(&[b"7"]).expect("mkdir");
        d.write(&[b"7", b"stat"], b"hello").expect("write");
        d.write(&[b"7", b"stat"], b"hi")
            .expect("truncating rewrite");
        assert_eq!(std::fs::read(root.join("7/stat")).expect("read"), b"hi");
        d.replace(&[b"7", b"stat"], &[b"7", b".tmp"], b"atomic")
            .expect("replace");
        assert_eq!(std::fs::read(root.join("7/stat")).expect("read"), b"atomic");
        assert!(!root.join("7/.tmp").exists());
        d.symlink(b"/usr/bin/x", &[b"7", b"exe"]).expect("symlink");
        assert_eq!(
            std::fs::read_link(root.join("7/exe")).expect("link"),
            PathBuf::from("/usr/bin/x")
        );
        d.rename(&[b"7"], &[b"8"]).expect("rename");
        let e = d.mkdir(&[b"8"]).expect_err("exists");
        assert!(e.to_string().contains("/8"), "{e}");
        d.remove_tree(b"8").expect("remove");
        assert!(!root.join("8").exists());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
