//! Container identity from real cgroups: processes are moved into cgroups
//! named the way container runtimes name them, in a cgroup v1 hierarchy
//! and in the v2 one, and the receiver scrapes the real `/proc`.
//!
//! Needs root and a writable v2 hierarchy (`/sys/fs/cgroup/unified` on a
//! hybrid host, `/sys/fs/cgroup` on a v2-only one); v1 is checked where
//! `/sys/fs/cgroup/pids` is mounted. Without them the test skips, except in
//! CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_processors::{Resource, Value};
use phoenix_telemetry::registry::Registry;
use phoenix_tests::cgroup::{Placed, unique, writable_v2};
use phoenix_tests::tools::cannot_check;

fn resource(batch: &phoenix_processors::Batch, pid: i64) -> &Resource {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&Value::Int(pid)))
        .unwrap_or_else(|| panic!("pid {pid} not in the scrape"))
}

/// A cgroup to create, and what the receiver should say of a process in it.
struct Case {
    hierarchy: PathBuf,
    /// The cgroup's path below the hierarchy.
    relative: String,
    id: String,
    runtime: Option<&'static str>,
    pod_uid: String,
    /// The hierarchy as `process.linux.cgroup` names it (`:pids:/`, `0::/`):
    /// the line the receiver should have taken.
    line_names: &'static str,
}

#[test]
fn receiver_names_containers_of_real_cgroups_v1_and_v2() {
    let Some(v2) = writable_v2() else {
        return;
    };
    let u = unique();
    let id = |tag: u64| format!("{u:016x}{tag:048x}");
    let uid = |tag: u16| {
        format!(
            "{:08x}-{tag:04x}-4000-8000-{:012x}",
            u >> 32,
            u & 0xffff_ffff
        )
    };
    let (uid_v1, uid_v2) = (uid(0), uid(1));
    let mut cases = vec![
        // cgroup v2, systemd driver, containerd.
        Case {
            hierarchy: v2,
            relative: format!(
                "phoenix-test-kubepods.slice/kubepods-burstable.slice/\
                 kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                uid_v2.replace('-', "_"),
                id(0xb2)
            ),
            id: id(0xb2),
            runtime: Some("containerd"),
            pod_uid: uid_v2,
            line_names: "0::/",
        },
    ];
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        // cgroup v1, cgroupfs driver: the runtime is not in the path.
        cases.push(Case {
            hierarchy: v1.to_path_buf(),
            relative: format!("phoenix-test-kubepods/burstable/pod{uid_v1}/{}", id(0xa1)),
            id: id(0xa1),
            runtime: None,
            pod_uid: uid_v1,
            line_names: ":pids:/",
        });
    } else {
        eprintln!("NOTE: no cgroup v1 pids hierarchy (a v2-only host): v2 alone is checked");
    }

    let placed = cases
        .iter()
        .map(|c| {
            Placed::new(&c.hierarchy, &c.relative).map_err(|e| {
                format!(
                    "cannot create {} or move a process into it: {e}",
                    c.hierarchy.join(&c.relative).display()
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

    let mut config = ProcfsConfig::default();
    config
        .resource_attributes
        .insert("process.linux.cgroup".into(), Toggle { enabled: true });
    let mut receiver = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver on /proc");
    let batch = receiver.scrape();

    for (case, process) in cases.iter().zip(&placed) {
        let a = &resource(&batch, process.pid()).attributes;
        let ctx = &case.relative;
        assert_eq!(a.get_str("container.id"), Some(case.id.as_str()), "{ctx}");
        assert_eq!(a.get_str("container.runtime.name"), case.runtime, "{ctx}");
        assert_eq!(
            a.get_str("k8s.pod.uid"),
            Some(case.pod_uid.as_str()),
            "{ctx}"
        );
        let line = a.get_str("process.linux.cgroup").expect("cgroup line");
        assert!(
            line.contains(case.line_names) && line.ends_with(&format!("/{}", case.relative)),
            "{line}"
        );
    }

    // The test itself runs in no container shape.
    let own = &resource(&batch, i64::from(std::process::id())).attributes;
    assert_eq!(own.get("container.id"), None);
    drop(placed);
}
