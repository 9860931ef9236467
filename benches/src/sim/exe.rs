//! The simulator's private directory of named executables.
//!
//! A process's comm is the file name it was exec'd through, and its
//! `/proc/PID/exe` is that file. A symlink named `postgres` would give the
//! right comm but an exe pointing at `phoenix-sim`, so each name is a *hard
//! link* to the simulator's own binary (one inode, so one copy in the page
//! cache however many names), or, where a hard link is impossible (another
//! filesystem, `fs.protected_hardlinks`), a copy.
//!
//! The directory is `<base>/phoenix-sim-<pid>/` and is removed when the
//! simulator exits. A simulator that was killed cannot remove its own, so
//! every start removes those of simulators that are no longer running.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A file in each directory saying who made it: only directories with it
/// are ever removed as stale.
const MARKER: &str = ".phoenix-sim";
const PREFIX: &str = "phoenix-sim-";

/// Named executables, removed on drop.
#[derive(Debug)]
pub struct ExeDir {
    root: PathBuf,
    bin: PathBuf,
    /// Whether the last [`ExeDir::exe`] had to copy (reported once).
    pub copied: bool,
}

impl ExeDir {
    /// Make `<base>/phoenix-sim-<pid>/bin`, after removing the directories
    /// of dead simulators from `base`.
    pub fn create(base: &Path) -> io::Result<ExeDir> {
        remove_stale(base);
        let root = base.join(format!("{PREFIX}{}", std::process::id()));
        // A leftover of an earlier process with the same PID: ours now.
        if root.join(MARKER).exists() {
            let _ = fs::remove_dir_all(&root);
        }
        fs::create_dir_all(&root)
            .map_err(|e| annotate(e, "cannot create the work directory", &root))?;
        fs::write(root.join(MARKER), std::process::id().to_string())
            .map_err(|e| annotate(e, "cannot write in the work directory", &root))?;
        let bin = root.join("bin");
        fs::create_dir_all(&bin).map_err(|e| annotate(e, "cannot create", &bin))?;
        Ok(ExeDir {
            root,
            bin,
            copied: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The executable named `name` (made on first use).
    pub fn exe(&mut self, name: &str) -> io::Result<PathBuf> {
        let dest = self.bin.join(name);
        if dest.exists() {
            return Ok(dest);
        }
        let own = std::env::current_exe()?;
        // A binary rebuilt while running reads "... (deleted)": link nothing
        // by that name; the copy below reads the running image instead.
        let linkable = !own
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.ends_with(" (deleted)"));
        if linkable && fs::hard_link(&own, &dest).is_ok() {
            return Ok(dest);
        }
        fs::copy("/proc/self/exe", &dest)
            .map_err(|e| annotate(e, "cannot link or copy the simulator to", &dest))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))?;
        self.copied = true;
        Ok(dest)
    }
}

impl Drop for ExeDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Remove `base/phoenix-sim-<pid>` directories (with the marker) whose
/// simulator is gone. Best effort: a directory that cannot be removed is
/// left for the next start.
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 0 || !entry.path().join(MARKER).exists() || is_alive(pid) {
            continue;
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_executables_are_the_same_binary_and_go_away() {
        let base = std::env::temp_dir().join(format!("phoenix-exe-test-{}", std::process::id()));
        fs::create_dir_all(&base).expect("base");
        // A stale directory of a dead simulator, and a look-alike without
        // the marker, which must be left alone.
        let stale = base.join("phoenix-sim-999999999");
        fs::create_dir_all(stale.join("bin")).expect("stale");
        fs::write(stale.join(MARKER), "999999999").expect("marker");
        let foreign = base.join("phoenix-sim-999999998");
        fs::create_dir_all(&foreign).expect("foreign");

        let mut dir = ExeDir::create(&base).expect("exe dir");
        assert!(!stale.exists(), "stale directory removed");
        assert!(foreign.exists(), "unmarked directory kept");
        let a = dir.exe("postgres").expect("postgres");
        let again = dir.exe("postgres").expect("again");
        assert_eq!(a, again);
        assert_eq!(a.file_name().and_then(OsStr::to_str), Some("postgres"));
        let own = fs::metadata("/proc/self/exe").expect("own binary");
        assert_eq!(fs::metadata(&a).expect("linked binary").len(), own.len());
        let root = dir.path().to_path_buf();
        drop(dir);
        assert!(!root.exists(), "removed on drop");
        fs::remove_dir_all(&base).expect("cleanup");
    }
}
