//! Real cgroups for the tests: a process moved into a cgroup named the way
//! a container runtime names it, removed again pass or fail.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tools::cannot_check;

/// A `sleep` moved into a cgroup created for it; dropping it kills the
/// process and removes the cgroups it created, pass or fail.
pub struct Placed {
    child: Child,
    /// Created directories, outermost first.
    created: Vec<PathBuf>,
}

impl Placed {
    /// Create `hierarchy/relative` (each missing level) and move a new
    /// `sleep` into it.
    pub fn new(hierarchy: &Path, relative: &str) -> io::Result<Placed> {
        let mut placed = Placed {
            child: Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()?,
            created: Vec::new(),
        };
        let mut dir = hierarchy.to_path_buf();
        for level in relative.split('/') {
            dir.push(level);
            if !dir.exists() {
                fs::create_dir(&dir)?;
                placed.created.push(dir.clone());
            }
        }
        fs::write(dir.join("cgroup.procs"), placed.child.id().to_string())?;
        Ok(placed)
    }

    pub fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in self.created.iter().rev() {
            // A reaped process can hold its cgroup for a moment (EBUSY).
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The v2 hierarchy a test may create cgroups in, when it is root and
/// there is one; otherwise the test cannot check ([`cannot_check`]: a skip,
/// a failure in CI) and gets `None`.
pub fn writable_v2() -> Option<PathBuf> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        cannot_check("creating cgroups needs root; run the test as root");
        return None;
    }
    let found = v2_hierarchy();
    if found.is_none() {
        cannot_check("no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup");
    }
    found
}

/// The v2 hierarchy: `unified` on a hybrid host, the mount itself on a
/// v2-only one.
fn v2_hierarchy() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
}

/// A value unique to this run, so parallel runs never share a cgroup.
pub fn unique() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}
