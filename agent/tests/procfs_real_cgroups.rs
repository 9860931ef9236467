//! Container identity from real cgroups: processes are moved into cgroups
//! named the way container runtimes name them, in a cgroup v1 hierarchy
//! and in the v2 one, and the receiver scrapes the real `/proc`.
//!
//! Needs root and writable `/sys/fs/cgroup/pids` (v1) and
//! `/sys/fs/cgroup/unified` (or `/sys/fs/cgroup` itself on a v2-only host).
//! Without them the test skips, except in CI (`CI` set), where it fails.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_processors::{Resource, Value};
use phoenix_telemetry::registry::Registry;
use phoenix_tests::tools::cannot_check;

/// A `sleep` moved into a cgroup created for it; dropping it kills the
/// process and removes the cgroups it created, pass or fail.
struct Placed {
    child: Child,
    /// Created directories, outermost first.
    created: Vec<PathBuf>,
}

impl Placed {
    /// Create `hierarchy/relative` (each missing level) and move a new
    /// `sleep` into it.
    fn new(hierarchy: &Path, relative: &str) -> io::Result<Placed> {
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

    fn pid(&self) -> i64 {
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

/// The v2 hierarchy: `unified` on a hybrid host, the mount itself on a
/// v2-only one.
fn v2_hierarchy() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
}

/// A value unique to this run, so parallel runs never share a cgroup.
fn unique() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}

fn resource(batch: &phoenix_processors::Batch, pid: i64) -> &Resource {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&Value::Int(pid)))
        .unwrap_or_else(|| panic!("pid {pid} not in the scrape"))
}

#[test]
fn receiver_names_containers_of_real_cgroups_v1_and_v2() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        cannot_check("creating cgroups needs root; run the test as root");
        return;
    }
    let v1 = Path::new("/sys/fs/cgroup/pids");
    let Some(v2) = v2_hierarchy() else {
        cannot_check("no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup");
        return;
    };
    let u = unique();
    let id_v1 = format!("{u:016x}{:048x}", 0xa1);
    let id_v2 = format!("{u:016x}{:048x}", 0xb2);
    let uid_v1 = format!("{:08x}-0000-4000-8000-{:012x}", u >> 32, u & 0xffff_ffff);
    let uid_v2 = format!("{:08x}-1111-4000-8000-{:012x}", u >> 32, u & 0xffff_ffff);

    // cgroup v1, cgroupfs driver: the runtime is not in the path.
    let cgroupfs = format!("phoenix-test-kubepods/burstable/pod{uid_v1}/{id_v1}");
    // cgroup v2, systemd driver, containerd.
    let systemd_uid = uid_v2.replace('-', "_");
    let systemd = format!(
        "phoenix-test-kubepods.slice/kubepods-burstable.slice/\
         kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{id_v2}.scope"
    );
    let placed = [(v1, &cgroupfs), (v2.as_path(), &systemd)]
        .into_iter()
        .map(|(hierarchy, relative)| {
            Placed::new(hierarchy, relative).map_err(|e| {
                format!(
                    "cannot create {} or move a process into it: {e}",
                    hierarchy.join(relative).display()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>();
    let placed = match placed {
        Ok(p) => p,
        Err(why) => {
            cannot_check(&why);
            return;
        }
    };
    let (in_v1, in_v2) = (&placed[0], &placed[1]);

    let mut config = ProcfsConfig::default();
    config
        .resource_attributes
        .insert("process.linux.cgroup".into(), Toggle { enabled: true });
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver on /proc");
    let batch = receiver.scrape();

    let a = &resource(&batch, in_v1.pid()).attributes;
    assert_eq!(a.get_str("container.id"), Some(id_v1.as_str()));
    assert_eq!(
        a.get("container.runtime.name"),
        None,
        "cgroupfs: not in the path"
    );
    assert_eq!(a.get_str("k8s.pod.uid"), Some(uid_v1.as_str()));
    let line = a.get_str("process.linux.cgroup").expect("cgroup line");
    assert!(line.ends_with(&format!(":pids:/{cgroupfs}")), "{line}");

    let a = &resource(&batch, in_v2.pid()).attributes;
    assert_eq!(a.get_str("container.id"), Some(id_v2.as_str()));
    assert_eq!(a.get_str("container.runtime.name"), Some("containerd"));
    assert_eq!(a.get_str("k8s.pod.uid"), Some(uid_v2.as_str()));
    let line = a.get_str("process.linux.cgroup").expect("cgroup line");
    assert!(
        line.starts_with("0::/") && line.ends_with(&systemd),
        "{line}"
    );

    // The test itself runs in no container shape.
    let own = &resource(&batch, i64::from(std::process::id())).attributes;
    assert_eq!(own.get("container.id"), None);
    drop(placed);
}
