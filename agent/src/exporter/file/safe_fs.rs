//! The file exporter's access to the file system, for an agent that runs as
//! root and takes its config from a controller:
//!
//! - a path is walked one component at a time from `/`, each directory
//!   opened with `O_NOFOLLOW|O_DIRECTORY` relative to the one before, so a
//!   symbolic link anywhere in the path is refused (not only the last
//!   component), and a missing directory is created with `mkdirat` inside
//!   a directory already reached that way. One walk on every kernel, rather
//!   than `openat2(RESOLVE_NO_SYMLINKS)` where available, so the error can
//!   name the link and creation follows the same rule;
//! - no directory on a kernel-interface file system (procfs, sysfs, cgroup,
//!   ...) is entered, wherever it is mounted (`/host/proc` as well as
//!   `/proc`);
//! - a file is appended to, rotated, truncated or replaced only when this
//!   exporter wrote it ([`check_ours`]); new files are created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode 0600 ([`NEW_FILE_MODE`]).
//!
//! Every refusal is an `io::Error` of kind `PermissionDenied` whose text
//! names the field and the rule.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// What every line the exporter writes starts with (the OTLP/JSON
/// `ExportMetricsServiceRequest`, as serde_json writes it). No file the
/// exporter did not write is expected to start like this, and the ones that
/// do are OTLP/JSON dumps, for which appending and rotating do no harm.
pub(super) const LINE_PREFIX: &[u8] = b"{\"resourceMetrics\":";

/// Owner read/write only: lines carry command lines, which can hold
/// secrets, and the agent's group is usually root's, so 0640 would give
/// nobody legitimate anything more.
const NEW_FILE_MODE: u32 = 0o600;

/// Directories the exporter creates: as private as its files.
const NEW_DIR_MODE: libc::mode_t = 0o700;

/// A directory reached from `/` without following a link.
pub(crate) struct Dir {
    fd: OwnedFd,
    /// Its path, for error messages.
    path: PathBuf,
}

/// Open (creating if missing) `path` for appending, refusing anything the
/// exporter did not write; the file and its length. `path` is absolute,
/// without `.` or `..` (a `FileTarget::File`).
pub(super) fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let (dir, name) = Dir::parent_of(path, true)?;
    dir.open_append(&name)
}

/// Check that `path` and its backups `path.1` ..= `path.backups` are, where
/// they exist, files this exporter wrote: rotation moves or replaces each.
pub(super) fn check_rotation(path: &Path, backups: u32) -> io::Result<()> {
    let (dir, name) = Dir::parent_of(path, false)?;
    dir.check_rotation(&name, backups)
}

/// Move `path` to `path.1`, `path.1` to `path.2`, ..., replacing
/// `path.backups`; nothing moves unless every one of them is ours.
pub(super) fn rotate(path: &Path, backups: u32) -> io::Result<()> {
    let (dir, name) = Dir::parent_of(path, false)?;
    dir.check_rotation(&name, backups)?;
    for i in (1..backups).rev() {
        dir.rename(&backup_name(&name, i), &backup_name(&name, i + 1))?;
    }
    dir.rename(&name, &backup_name(&name, 1))
}

/// Open (creating, 0700, if missing) the directory `path`, walked from `/`
/// like an export file's parent: the OTLP exporters' disk queue lives there.
pub(crate) fn open_dir(path: &Path) -> io::Result<Dir> {
    let (parent, name) = Dir::parent_of(path, true)?;
    let dir = parent.child(&name, true)?;
    dir.refuse_kernel_fs()?;
    Ok(dir)
}

pub(super) fn backup_name(name: &OsStr, n: u32) -> OsString {
    let mut s = name.to_owned();
    s.push(format!(".{n}"));
    s
}

impl Dir {
    /// The directory holding `path` and the file's name in it, walked from
    /// `/`; missing directories are created when `create`.
    fn parent_of(path: &Path, create: bool) -> io::Result<(Dir, OsString)> {
        let mut components = path.components();
        let (Some(Component::RootDir), Some(Component::Normal(name))) =
            (components.next(), components.next_back())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path: {path:?} is not an absolute path to a file"),
            ));
        };
        let root = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open("/")?;
        let mut dir = Dir {
            fd: root.into(),
            path: PathBuf::from("/"),
        };
        dir.refuse_kernel_fs()?;
        for component in components {
            let Component::Normal(part) = component else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path: {path:?} has a `.` or `..` component"),
                ));
            };
            dir = dir.child(part, create)?;
            dir.refuse_kernel_fs()?;
        }
        Ok((dir, name.to_owned()))
    }

    /// The subdirectory `name`, never through a link.
    fn child(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        let path = self.path.join(name);
        let c_name = c_string(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = match openat(self.fd.as_fd(), &c_name, flags, 0) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: `c_name` is NUL-terminated and outlives the call;
                // the directory descriptor is open.
                let rc =
                    unsafe { libc::mkdirat(self.fd.as_raw_fd(), c_name.as_ptr(), NEW_DIR_MODE) };
                let made = if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
                match made {
                    // Someone else made it meanwhile: open whatever is there.
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => openat(self.fd.as_fd(), &c_name, flags, 0),
                }
            }
            other => other,
        };
        let fd = fd.map_err(|e| self.explain(&c_name, &path, "path", e))?;
        Ok(Dir { fd, path })
    }

    /// `e` from opening `name` in this directory, with the rule it broke
    /// when `name` is a link, else with the path it happened at.
    fn explain(&self, name: &CStr, path: &Path, field: &str, e: io::Error) -> io::Error {
        let link = matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
            && matches!(self.peek(name), Ok(Some(m)) if m.file_type().is_symlink());
        if link {
            refused(format!(
                "{field}: a symbolic link in the path ({}) is refused",
                path.display()
            ))
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    }

    fn refuse_kernel_fs(&self) -> io::Result<()> {
        let mut st = MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: the descriptor is open for the lifetime of `self`, and `st`
        // is a properly sized out-parameter only read if the call succeeds.
        let rc = unsafe { libc::fstatfs(self.fd.as_raw_fd(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        let kind = match st.f_type {
            libc::PROC_SUPER_MAGIC => "procfs",
            libc::SYSFS_MAGIC => "sysfs",
            libc::CGROUP_SUPER_MAGIC | libc::CGROUP2_SUPER_MAGIC => "cgroup",
            libc::DEBUGFS_MAGIC => "debugfs",
            libc::TRACEFS_MAGIC => "tracefs",
            libc::SECURITYFS_MAGIC => "securityfs",
            libc::BPF_FS_MAGIC => "bpf",
            _ => return Ok(()),
        };
        Err(refused(format!(
            "path: {} is on a {kind} file system (a kernel interface), which is refused",
            self.path.display()
        )))
    }

    /// What `name` is, without following or opening it (opening a device or
    /// a FIFO can do things of its own); `None` when there is nothing there.
    fn peek(&self, name: &CStr) -> io::Result<Option<Metadata>> {
        match openat(self.fd.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => File::from(fd).metadata().map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name` opened with `flags` if it is there and a file we wrote.
    fn open_ours(&self, name: &OsStr, flags: libc::c_int, field: &str) -> io::Result<Option<File>> {
        let path = self.path.join(name);
        let c_name = c_string(name)?;
        let Some(seen) = self.peek(&c_name)? else {
            return Ok(None);
        };
        if seen.file_type().is_symlink() {
            return Err(refused(format!(
                "{field}: a symbolic link in the path ({}) is refused",
                path.display()
            )));
        }
        if !seen.is_file() {
            return Err(refused(format!(
                "{field}: {} is not a regular file, which is refused",
                path.display()
            )));
        }
        let file = match openat(
            self.fd.as_fd(),
            &c_name,
            flags | libc::O_NOFOLLOW | libc::O_NOCTTY,
            0,
        ) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.explain(&c_name, &path, field, e)),
        };
        check_ours(&file, &file.metadata()?, &path, field)?;
        Ok(Some(file))
    }

    fn open_append(&self, name: &OsStr) -> io::Result<(File, u64)> {
        let c_name = c_string(name)?;
        let append = libc::O_RDWR | libc::O_APPEND;
        // O_EXCL: a file this call creates is ours; O_EXCL also fails on a
        // link, whatever it points to.
        match openat(
            self.fd.as_fd(),
            &c_name,
            append | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY,
            NEW_FILE_MODE,
        ) {
            Ok(fd) => return Ok((File::from(fd), 0)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.explain(&c_name, &self.path.join(name), "path", e)),
        }
        match self.open_ours(name, append, "path")? {
            Some(file) => {
                let len = file.metadata()?.len();
                Ok((file, len))
            }
            // Removed since O_EXCL saw it: the next open creates it.
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: removed while being opened",
                    self.path.join(name).display()
                ),
            )),
        }
    }

    fn check_rotation(&self, name: &OsStr, backups: u32) -> io::Result<()> {
        self.open_ours(name, libc::O_RDONLY, "path")?;
        for i in 1..=backups {
            self.open_ours(&backup_name(name, i), libc::O_RDONLY, "rotation")?;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Take an exclusive `flock` on the directory, held while this `Dir`
    /// is open; false when another holder has it.
    pub(crate) fn try_lock(&self) -> io::Result<bool> {
        // SAFETY: the descriptor is open for the lifetime of `self`.
        if unsafe { libc::flock(self.fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            e => Err(e),
        }
    }

    /// The names in this directory. Listed by path (std has no listing of
    /// a descriptor), so every name is then opened relative to `self`,
    /// never followed through a link.
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(&self.path)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    /// A new file `name`, 0600; fails if anything is there already.
    pub(crate) fn create_new(&self, name: &OsStr) -> io::Result<File> {
        let c_name = c_string(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY;
        openat(self.fd.as_fd(), &c_name, flags, NEW_FILE_MODE)
            .map(File::from)
            .map_err(|e| self.explain(&c_name, &self.path.join(name), "directory", e))
    }

    /// `name` opened for reading if it is a regular file (`None` when it
    /// is gone). Non-blocking open: a FIFO planted there cannot hang us.
    pub(crate) fn open_regular(&self, name: &OsStr) -> io::Result<Option<File>> {
        let c_name = c_string(name)?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
        let file = match openat(self.fd.as_fd(), &c_name, flags, 0) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.explain(&c_name, &self.path.join(name), "directory", e)),
        };
        if !file.metadata()?.is_file() {
            return Err(refused(format!(
                "{} is not a regular file",
                self.path.join(name).display()
            )));
        }
        Ok(Some(file))
    }

    /// `unlinkat` of a file; one already gone is not an error.
    pub(crate) fn remove(&self, name: &OsStr) -> io::Result<()> {
        let c_name = c_string(name)?;
        // SAFETY: `c_name` is NUL-terminated and outlives the call; the
        // directory descriptor is open.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), 0) };
        unless_missing(rc, || format!("{}: remove", self.path.join(name).display()))
    }

    /// Make renames and removals in this directory durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        // SAFETY: the descriptor is open for the lifetime of `self`.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `renameat` within this directory; a missing `from` is not an error
    /// (that backup was never made).
    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (c_from, c_to) = (c_string(from)?, c_string(to)?);
        // SAFETY: both names are NUL-terminated and outlive the call; the
        // directory descriptor is open.
        let rc = unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                c_from.as_ptr(),
                self.fd.as_raw_fd(),
                c_to.as_ptr(),
            )
        };
        unless_missing(rc, || {
            format!("{}: rename to {to:?}", self.path.join(from).display())
        })
    }
}

/// The outcome of a call on a name that returned `rc`: a name that is not
/// there is not an error (nothing to move or remove); other errors say
/// `what` was being done.
fn unless_missing(rc: libc::c_int, what: impl FnOnce() -> String) -> io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::NotFound => Ok(()),
        e => Err(io::Error::new(e.kind(), format!("{}: {e}", what()))),
    }
}

/// Whether `file` is one this exporter wrote: a regular file of this user,
/// either starting with [`LINE_PREFIX`] or empty with [`NEW_FILE_MODE`]
/// (the exporter creates its file when built, before it has a line to
/// write, and the agent may restart before it does). Survives restarts
/// because it reads the file, not the agent's memory.
fn check_ours(file: &File, meta: &Metadata, path: &Path, field: &str) -> io::Result<()> {
    if !meta.is_file() {
        return Err(refused(format!(
            "{field}: {} is not a regular file, which is refused",
            path.display()
        )));
    }
    // SAFETY: geteuid cannot fail and has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(refused(format!(
            "{field}: {} belongs to another user; the file exporter only writes to files it created",
            path.display()
        )));
    }
    let ours = if meta.len() == 0 {
        meta.mode() & 0o7777 == NEW_FILE_MODE
    } else {
        let mut head = [0u8; LINE_PREFIX.len()];
        match file.read_exact_at(&mut head, 0) {
            Ok(()) => head == LINE_PREFIX,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(e),
        }
    };
    if ours {
        Ok(())
    } else {
        Err(refused(format!(
            "{field}: {} was not written by the file exporter (its first line is not \
             an OTLP/JSON request); it is never appended to, rotated or replaced",
            path.display()
        )))
    }
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

fn c_string(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "path: must not contain a NUL byte",
        )
    })
}

fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is
        // an open descriptor; `mode` is only read with O_CREAT.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode,
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
