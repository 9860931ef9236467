//! Container identity from `/proc/PID/cgroup`.
//!
//! Container runtimes name the cgroup of each container after its id, in a
//! handful of shapes that depend on the runtime and on the cgroup driver
//! (systemd or cgroupfs) the node runs:
//!
//! ```text
//! systemd:  .../kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//!           .../crio-<id>.scope  .../docker-<id>.scope  .../libpod-<id>.scope
//! cgroupfs: /kubepods/burstable/pod<uid>/<id>   (runtime not in the path)
//!           /kubepods/pod<uid>/crio-<id>  /docker/<id>  /libpod_parent/libpod-<id>
//! ```
//!
//! `<id>` is 64 lowercase hex digits. Only these shapes are recognised: a hex
//! string anywhere else is not taken for a container (a service or a user
//! may name a cgroup anything). Paths are read segment by segment from the
//! leaf up, so a container's sub-cgroup (`libpod-<id>.scope/container`), a
//! nested container (the innermost wins) and a path relative to another
//! cgroup namespace (`/../../kubepods-...`) all resolve.
//!
//! Every byte is untrusted: malformed lines are skipped, nothing panics, and
//! the work is linear in the input.

/// The container runtimes recognised by their cgroup names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
}

impl Runtime {
    /// The `container.runtime.name` value: the scheme Kubernetes gives the
    /// runtime in a container status's `containerID` (`containerd://...`,
    /// `cri-o://...`, `docker://...`), and `podman`, so the same runtime is
    /// spelt the same way by the k8s enrichment and by this receiver.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// The container a process runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container<'a> {
    /// 64 lowercase hex digits, as the runtime names it.
    pub id: &'a str,
    /// `None` for the cgroupfs driver's Kubernetes shape (`pod<uid>/<id>`),
    /// which containerd, CRI-O and dockershim share.
    pub runtime: Option<Runtime>,
}

/// A Kubernetes pod UID, with the `-`s the systemd driver turns into `_`
/// put back: the UID as the API server knows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PodUid {
    bytes: [u8; UUID_LEN],
    len: u8,
}

impl PodUid {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever stored (see `pod_uid`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for PodUid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one `/proc/PID/cgroup` says about where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cgroup<'a> {
    /// The line the rest was read from, as the kernel wrote it
    /// (`0::/system.slice/cron.service`): `process.linux.cgroup`.
    pub line: &'a [u8],
    pub container: Option<Container<'a>>,
    pub pod_uid: Option<PodUid>,
}

/// The length of a container id.
const ID_LEN: usize = 64;
/// The length of a pod UID written as a UUID (8-4-4-4-12).
const UUID_LEN: usize = 36;
/// The length of a static pod's UID: a hash of its manifest, 32 hex digits.
const HASH_UID_LEN: usize = 32;

/// Container cgroup names that carry the runtime: prefix, suffix, runtime.
/// `crio-conmon-<id>.scope` (CRI-O's monitor, outside the container) does
/// not match, since its id would have to start after `crio-`.
const PREFIXED: &[(&[u8], &[u8], Runtime)] = &[
    (b"cri-containerd-", b".scope", Runtime::Containerd),
    (b"crio-", b".scope", Runtime::CriO),
    (b"crio-", b"", Runtime::CriO),
    (b"docker-", b".scope", Runtime::Docker),
    (b"libpod-", b".scope", Runtime::Podman),
    (b"libpod-", b"", Runtime::Podman),
];

/// Parse a `/proc/PID/cgroup` file. `None` when it has no well-formed line.
///
/// The line used is the best-ranked one that names a container (or, with
/// none, the best-ranked line): on a hybrid or v1 host the runtimes manage
/// the v1 controllers, so `pids`, `memory` and `cpu` come first, then
/// `name=systemd`, then the v2 line (`0::`), which with the cgroupfs driver
/// on a hybrid host still shows the runtime's service rather than the
/// container. On a v2-only host the `0::` line is the only one.
pub fn parse_cgroup(buf: &[u8]) -> Option<Cgroup<'_>> {
    let mut best: Option<(u8, Cgroup<'_>)> = None;
    for line in buf.split(|&b| b == b'\n') {
        let Some((controllers, path)) = split_line(line) else {
            continue;
        };
        let (container, pod_uid) = identify(path);
        // Lines naming a container outrank every line that does not.
        let rank = rank(controllers) + if container.is_some() { 0 } else { 8 };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                Cgroup {
                    line,
                    container,
                    pod_uid,
                },
            ));
        }
    }
    best.map(|(_, cgroup)| cgroup)
}

/// `hierarchy-ID:controller-list:cgroup-path` → (controller list, path);
/// `None` for a line without both colons or whose path is not absolute.
fn split_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = line.iter().position(|&b| b == b':')?;
    let rest = &line[first + 1..];
    let second = rest.iter().position(|&b| b == b':')?;
    let (controllers, path) = (&rest[..second], &rest[second + 1..]);
    let hierarchy = &line[..first];
    (!hierarchy.is_empty()
        && hierarchy.iter().all(u8::is_ascii_digit)
        && path.first() == Some(&b'/'))
    .then_some((controllers, path))
}

/// Lower is preferred; see [`parse_cgroup`].
fn rank(controllers: &[u8]) -> u8 {
    let has = |name: &[u8]| controllers.split(|&b| b == b',').any(|c| c == name);
    if has(b"pids") {
        0
    } else if has(b"memory") {
        1
    } else if has(b"cpu") {
        2
    } else if has(b"name=systemd") {
        3
    } else if controllers.is_empty() {
        4
    } else {
        5
    }
}

/// The container and pod a cgroup path names, from the leaf up: the
/// innermost container segment, and the pod segment nearest above it.
fn identify(path: &[u8]) -> (Option<Container<'_>>, Option<PodUid>) {
    let mut segments = path.rsplit(|&b| b == b'/').peekable();
    let mut container = None;
    while let Some(segment) = segments.next() {
        if let Some(c) = container_segment(segment, segments.peek().copied()) {
            container = Some(c);
            break;
        }
    }
    // A process directly in a pod's cgroup (no container) still has a pod;
    // when a container was found, the search goes on from its parent.
    let pod_uid = if container.is_some() {
        segments.find_map(pod_segment)
    } else {
        path.rsplit(|&b| b == b'/').find_map(pod_segment)
    };
    (container, pod_uid)
}

/// The container a segment names; `parent` is the segment above it, which
/// a bare id needs to be recognised (`docker/<id>`, `pod<uid>/<id>`).
fn container_segment<'a>(segment: &'a [u8], parent: Option<&[u8]>) -> Option<Container<'a>> {
    for &(prefix, suffix, runtime) in PREFIXED {
        if let Some(id) = segment
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(suffix))
            .and_then(container_id)
        {
            return Some(Container {
                id,
                runtime: Some(runtime),
            });
        }
    }
    let id = container_id(segment)?;
    let parent = parent?;
    let runtime = if parent == b"docker" {
        Some(Runtime::Docker)
    } else if pod_segment(parent).is_some() {
        None
    } else {
        return None;
    };
    Some(Container { id, runtime })
}

/// `s` if it is a container id: exactly 64 lowercase hex digits.
fn container_id(s: &[u8]) -> Option<&str> {
    if s.len() != ID_LEN || !s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    std::str::from_utf8(s).ok()
}

/// The pod UID of a pod's cgroup: `pod<uid>` (cgroupfs driver) or
/// `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd driver; the
/// kubelet may nest kubepods in a slice of its own, which then prefixes
/// every name: `kubelet-kubepods-besteffort-pod<uid>.slice` in kind).
fn pod_segment(segment: &[u8]) -> Option<PodUid> {
    let uid = match segment.strip_suffix(b".slice") {
        Some(slice) => {
            let mut parts = slice.rsplit(|&b| b == b'-');
            let last = parts.next()?;
            if !parts.any(|p| p == b"kubepods") {
                return None;
            }
            last.strip_prefix(b"pod")?
        }
        None => segment.strip_prefix(b"pod")?,
    };
    pod_uid(uid)
}

/// A UID as a pod's cgroup writes it: a UUID (with `-` or, from systemd
/// slice names, `_`) or a static pod's 32-hex-digit hash.
fn pod_uid(s: &[u8]) -> Option<PodUid> {
    let hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let mut bytes = [0u8; UUID_LEN];
    match s.len() {
        UUID_LEN => {
            for (i, (&b, out)) in s.iter().zip(&mut bytes).enumerate() {
                *out = if matches!(i, 8 | 13 | 18 | 23) {
                    if b != b'-' && b != b'_' {
                        return None;
                    }
                    b'-'
                } else if hex(&b) {
                    b
                } else {
                    return None;
                };
            }
        }
        HASH_UID_LEN if s.iter().all(hex) => bytes[..HASH_UID_LEN].copy_from_slice(s),
        _ => return None,
    }
    Some(PodUid {
        bytes,
        len: s.len() as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f2b6c0d9a8e7f61524334251607f8e9d0c1b2a394857661e2f3a4b5c6d7e8f9";
    const UID: &str = "5f1c4c8e-2b9a-4e7d-9c3a-0d1e2f3a4b5c";
    const UID_SYSTEMD: &str = "5f1c4c8e_2b9a_4e7d_9c3a_0d1e2f3a4b5c";

    /// [id, runtime name, pod uid] of a file, `None` parts as `-`.
    fn identity(file: &str) -> [String; 3] {
        let cg = parse_cgroup(file.as_bytes()).expect("a line");
        let c = cg.container;
        [
            c.map_or("-", |c| c.id),
            c.and_then(|c| c.runtime).map_or("-", Runtime::name),
            cg.pod_uid.as_ref().map_or("-", PodUid::as_str),
        ]
        .map(String::from)
    }

    #[test]
    fn every_runtime_and_driver_shape() {
        #[rustfmt::skip]
        let table: &[(String, [&str; 3])] = &[
            // cgroup v2, systemd driver.
            (format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope\n"),
             [ID, "containerd", UID]),
            (format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope\n"),
             [ID, "cri-o", UID]),
            // Guaranteed QoS: no QoS slice.
            (format!("0::/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/docker-{ID}.scope\n"),
             [ID, "docker", UID]),
            (format!("0::/system.slice/docker-{ID}.scope\n"), [ID, "docker", "-"]),
            (format!("0::/machine.slice/libpod-{ID}.scope\n"), [ID, "podman", "-"]),
            // Rootless podman, and its sub-cgroup for the payload.
            (format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"),
             [ID, "podman", "-"]),
            // cgroup v2, cgroupfs driver.
            (format!("0::/kubepods/burstable/pod{UID}/{ID}\n"), [ID, "-", UID]),
            (format!("0::/kubepods/pod{UID}/crio-{ID}\n"), [ID, "cri-o", UID]),
            (format!("0::/docker/{ID}\n"), [ID, "docker", "-"]),
            (format!("0::/libpod_parent/libpod-{ID}\n"), [ID, "podman", "-"]),
            // kind: the kubelet's own slice around kubepods.
            (format!("0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope\n"),
             [ID, "containerd", UID]),
            // Docker in Docker: the innermost container is the process's.
            (format!("0::/docker/{}/docker/{ID}\n", "0".repeat(64)), [ID, "docker", "-"]),
            // Seen from inside another cgroup namespace.
            (format!("0::/../../kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope\n"),
             [ID, "containerd", UID]),
            // Static pod: a 32-digit hash for a UID.
            (format!("0::/kubepods/besteffort/pod0123456789abcdef0123456789abcdef/{ID}\n"),
             [ID, "-", "0123456789abcdef0123456789abcdef"]),
            // A process in the pod's cgroup itself: a pod, no container.
            (format!("0::/kubepods/burstable/pod{UID}\n"), ["-", "-", UID]),
            // Hosts' own processes.
            ("0::/system.slice/containerd.service\n".into(), ["-", "-", "-"]),
            ("0::/user.slice/user-0.slice/session-3.scope\n".into(), ["-", "-", "-"]),
            ("0::/\n".into(), ["-", "-", "-"]),
            // CRI-O's monitor runs beside the container, not in it.
            (format!("0::/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope\n"),
             ["-", "-", UID]),
            // A 64-hex name outside a known shape is not a container.
            (format!("0::/system.slice/{ID}\n"), ["-", "-", "-"]),
            (format!("0::/{ID}\n"), ["-", "-", "-"]),
            (format!("0::/system.slice/podman-{ID}.scope\n"), ["-", "-", "-"]),
            // A pod-looking slice outside kubepods is not a pod.
            (format!("0::/system.slice/app-pod{UID_SYSTEMD}.slice\n"), ["-", "-", "-"]),
        ];
        for (file, want) in table {
            assert_eq!(identity(file), want.map(String::from), "{file}");
        }
    }

    #[test]
    fn v1_and_hybrid_hosts_prefer_the_runtimes_controllers() {
        // cgroupfs driver on a hybrid host: the v1 controllers name the
        // container, the v2 and systemd lines show containerd's service.
        let file = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n\
             11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n\
             10:memory:/kubepods/burstable/pod{UID}/{ID}\n\
             1:name=systemd:/system.slice/containerd.service\n\
             0::/system.slice/containerd.service\n"
        );
        let cg = parse_cgroup(file.as_bytes()).expect("lines");
        assert_eq!(
            cg.line,
            format!("12:pids:/kubepods/burstable/pod{UID}/{ID}").as_bytes()
        );
        assert_eq!(cg.container.map(|c| c.id), Some(ID));
        // Without a pids line, memory; with only the systemd hierarchy, that.
        let file = format!("3:memory:/docker/{ID}\n2:cpu,cpuacct:/docker/{ID}\n0::/\n");
        let cg = parse_cgroup(file.as_bytes()).expect("lines");
        assert!(cg.line.starts_with(b"3:memory:"));
        assert_eq!(cg.container.and_then(|c| c.runtime), Some(Runtime::Docker));
        let file = format!("1:name=systemd:/system.slice/docker-{ID}.scope\n0::/\n");
        assert!(
            parse_cgroup(file.as_bytes())
                .expect("lines")
                .line
                .starts_with(b"1:name=systemd:")
        );
        // A host process on a hybrid host: the pids line stands for it.
        let file = "5:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n";
        let cg = parse_cgroup(file.as_bytes()).expect("lines");
        assert_eq!(cg.line, b"5:pids:/system.slice/cron.service");
        assert_eq!(cg.container, None);
    }

    #[test]
    fn hostile_input_is_no_container_and_no_panic() {
        assert_eq!(parse_cgroup(b""), None);
        assert_eq!(parse_cgroup(b"\n\n"), None);
        // Missing fields, a relative path, a non-numeric hierarchy.
        assert_eq!(parse_cgroup(b"0:/docker\n"), None);
        assert_eq!(parse_cgroup(b"0::docker/x\n"), None);
        assert_eq!(parse_cgroup(format!("x::/docker/{ID}\n").as_bytes()), None);
        assert_eq!(
            parse_cgroup(format!(":memory:/docker/{ID}\n").as_bytes()),
            None
        );
        // Ids of the wrong length or alphabet.
        for bad in [
            &ID[..63],
            &format!("{ID}0"),
            &ID.to_uppercase(),
            &format!("{}g", &ID[..63]),
        ] {
            assert_eq!(identity(&format!("0::/docker/{bad}\n"))[0], "-", "{bad}");
            assert_eq!(
                identity(&format!("0::/system.slice/docker-{bad}.scope\n"))[0],
                "-"
            );
        }
        // Pod UIDs of the wrong shape.
        for bad in [
            "5f1c4c8e-2b9a-4e7d-9c3a",
            "5f1c4c8ex2b9a-4e7d-9c3a-0d1e2f3a4b5c",
            "5F1C4C8E-2B9A-4E7D-9C3A-0D1E2F3A4B5C",
        ] {
            assert_eq!(
                identity(&format!("0::/kubepods/pod{bad}/{ID}\n")),
                ["-", "-", "-"].map(String::from)
            );
        }
        // Non-UTF-8 around a valid shape still yields it; in it, nothing.
        let mut file = b"0::/\xff\xfe/docker/".to_vec();
        file.extend_from_slice(ID.as_bytes());
        assert_eq!(
            parse_cgroup(&file).and_then(|c| c.container).map(|c| c.id),
            Some(ID)
        );
        let mut file = format!("0::/docker/{}", &ID[..63]).into_bytes();
        file.push(0xff);
        assert_eq!(parse_cgroup(&file).and_then(|c| c.container), None);
        // A huge line: parsed in linear time, and still no guess.
        let huge = format!("0::/{}\n", "a/".repeat(1 << 20));
        assert_eq!(
            parse_cgroup(huge.as_bytes()).and_then(|c| c.container),
            None
        );
        let huge = format!("0::/{}docker/{ID}\n", "x/".repeat(1 << 20));
        assert_eq!(
            parse_cgroup(huge.as_bytes())
                .and_then(|c| c.container)
                .map(|c| c.id),
            Some(ID)
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_any_id_found_is_in_the_input(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Some(c) = parse_cgroup(&bytes).and_then(|cg| cg.container) {
                prop_assert_eq!(c.id.len(), ID_LEN);
                prop_assert!(bytes.windows(ID_LEN).any(|w| w == c.id.as_bytes()));
            }
        }

        #[test]
        fn every_truncation_of_a_real_file_is_handled(cut in 0usize..300) {
            let file = format!("0::/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope\n");
            let cut = cut.min(file.len());
            let cg = parse_cgroup(&file.as_bytes()[..cut]);
            // An id is reported only once the whole segment is there.
            let expected = cut >= file.len() - 1;
            prop_assert_eq!(cg.and_then(|c| c.container).is_some(), expected);
        }
    }
}
