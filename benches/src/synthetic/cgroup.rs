//! `/proc/PID/cgroup` of synthetic processes.
//!
//! A node's containerised processes (the catalog's kinds that run under a
//! shim) are spread over pods of up to [`CONTAINERS_PER_POD`] containers,
//! several processes to a container. Each pod gets one runtime and cgroup
//! driver from a fixed mix, so that one tree exercises every shape the
//! receiver recognises (`agent/src/receiver/procfs/cgroup.rs`); a real node
//! runs one runtime, the mix is for coverage. Other processes live in a
//! systemd service and kernel threads in the root cgroup, as on a host.
//!
//! Ids and UIDs are derived from the pod and container numbers by a hash,
//! so nothing but two small numbers is stored per process.

use std::io::Write as _;

use phoenix_processors::hash::mix64;

/// The most containers a synthetic pod has.
pub const CONTAINERS_PER_POD: u64 = 3;

/// Which pod and container a process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub pod: u32,
    pub container: u8,
}

/// How a pod's runtime names its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// containerd, systemd driver, cgroup v2.
    ContainerdSystemd,
    /// CRI-O, systemd driver, cgroup v2.
    CrioSystemd,
    /// containerd, cgroupfs driver, a hybrid host (v1 controllers + v2).
    CgroupfsHybrid,
    /// Docker without Kubernetes, systemd driver.
    Docker,
    /// Podman, cgroupfs driver.
    Podman,
}

const SHAPES: [Shape; 5] = [
    Shape::ContainerdSystemd,
    Shape::CrioSystemd,
    Shape::CgroupfsHybrid,
    Shape::Docker,
    Shape::Podman,
];

impl Slot {
    fn shape(self) -> Shape {
        SHAPES[self.pod as usize % SHAPES.len()]
    }

    /// What the receiver should report for this process.
    pub fn truth(self) -> SynthContainer {
        let (runtime, in_pod) = match self.shape() {
            Shape::ContainerdSystemd => (Some("containerd"), true),
            Shape::CrioSystemd => (Some("cri-o"), true),
            // The cgroupfs driver's path does not say which runtime.
            Shape::CgroupfsHybrid => (None, true),
            Shape::Docker => (Some("docker"), false),
            Shape::Podman => (Some("podman"), false),
        };
        let mut id = Vec::with_capacity(64);
        self.write_id(&mut id);
        let mut uid = Vec::with_capacity(36);
        self.write_pod_uid(&mut uid, b'-');
        SynthContainer {
            id: String::from_utf8_lossy(&id).into_owned(),
            runtime,
            pod_uid: in_pod.then(|| String::from_utf8_lossy(&uid).into_owned()),
        }
    }

    fn write_id(self, out: &mut Vec<u8>) {
        let seed = u64::from(self.pod) << 8 | u64::from(self.container);
        for i in 0..4 {
            let _ = write!(out, "{:016x}", mix64(seed.wrapping_mul(4).wrapping_add(i)));
        }
    }

    /// The pod's UID as a UUID, its dashes written as `sep` (`_` in
    /// systemd slice names).
    fn write_pod_uid(self, out: &mut Vec<u8>, sep: u8) {
        let a = mix64(u64::from(self.pod) ^ 0x706f_6400);
        let b = mix64(a);
        let hex = format!("{a:016x}{b:016x}");
        for (i, part) in [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push(sep);
            }
            out.extend_from_slice(&hex.as_bytes()[part.0..part.1]);
        }
    }

    /// The QoS class of the pod, in the two spellings the drivers use.
    fn qos(self) -> (&'static str, &'static str) {
        match self.pod % 3 {
            0 => ("burstable", "-burstable"),
            1 => ("besteffort", "-besteffort"),
            // Guaranteed pods sit right under kubepods.
            _ => ("", ""),
        }
    }
}

/// The container a synthetic process runs in, as the receiver should name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthContainer {
    pub id: String,
    /// `container.runtime.name`; `None` where the path does not say.
    pub runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
}

/// Render the cgroup file of a process: in `slot`'s container, else a
/// kernel thread (root cgroup) or a host service named after `comm`.
pub fn render(out: &mut Vec<u8>, slot: Option<Slot>, comm: &str, kernel_thread: bool) {
    out.clear();
    let Some(slot) = slot else {
        if kernel_thread {
            out.extend_from_slice(b"0::/\n");
        } else {
            let _ = writeln!(out, "0::/system.slice/{comm}.service");
        }
        return;
    };
    let (qos, qos_slice) = slot.qos();
    match slot.shape() {
        Shape::ContainerdSystemd | Shape::CrioSystemd => {
            out.extend_from_slice(b"0::/kubepods.slice/");
            if !qos.is_empty() {
                let _ = write!(out, "kubepods-{qos}.slice/");
            }
            let _ = write!(out, "kubepods{qos_slice}-pod");
            slot.write_pod_uid(out, b'_');
            out.extend_from_slice(if slot.shape() == Shape::CrioSystemd {
                b".slice/crio-"
            } else {
                b".slice/cri-containerd-"
            });
            slot.write_id(out);
            out.extend_from_slice(b".scope\n");
        }
        Shape::CgroupfsHybrid => {
            for (n, controller) in [(12, "pids"), (11, "cpu,cpuacct"), (10, "memory")] {
                let _ = write!(out, "{n}:{controller}:/kubepods/");
                if !qos.is_empty() {
                    let _ = write!(out, "{qos}/");
                }
                out.extend_from_slice(b"pod");
                slot.write_pod_uid(out, b'-');
                out.push(b'/');
                slot.write_id(out);
                out.push(b'\n');
            }
            out.extend_from_slice(
                b"1:name=systemd:/system.slice/containerd.service\n0::/system.slice/containerd.service\n",
            );
        }
        Shape::Docker => {
            out.extend_from_slice(b"0::/system.slice/docker-");
            slot.write_id(out);
            out.extend_from_slice(b".scope\n");
        }
        Shape::Podman => {
            out.extend_from_slice(b"0::/libpod_parent/libpod-");
            slot.write_id(out);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_renders_its_ids() {
        let mut out = Vec::new();
        for pod in 0..SHAPES.len() as u32 * 3 {
            let slot = Slot { pod, container: 2 };
            render(&mut out, Some(slot), "x", false);
            let text = String::from_utf8(out.clone()).expect("ascii");
            let truth = slot.truth();
            assert_eq!(truth.id.len(), 64);
            assert!(text.contains(&truth.id), "{text}");
            if let Some(uid) = &truth.pod_uid {
                assert_eq!(uid.len(), 36);
                assert!(text.contains(uid) || text.contains(&uid.replace('-', "_")));
            }
        }
        // Containers of one pod differ; the pod's UID does not.
        let (a, b) = (
            Slot {
                pod: 7,
                container: 0,
            },
            Slot {
                pod: 7,
                container: 1,
            },
        );
        assert_ne!(a.truth().id, b.truth().id);
        assert_eq!(a.truth().pod_uid, b.truth().pod_uid);
        render(&mut out, None, "cron", false);
        assert_eq!(out, b"0::/system.slice/cron.service\n");
        render(&mut out, None, "kworker/0:1", true);
        assert_eq!(out, b"0::/\n");
    }
}
