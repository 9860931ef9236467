//! The per-process identity cache.
//!
//! What identifies a process and does not change while it runs (command
//! line, executable, owner, creation time, container) is read once, when
//! the receiver first sees the process, and kept here with the resource
//! [`Attributes`] built from it; every later scrape clones that `Arc`. A
//! process is keyed by PID *and* start time: a PID the kernel hands out
//! again is a new process.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::time::Instant;

use phoenix_processors::hash::mix64;
use phoenix_processors::semconv;
use phoenix_processors::{Attributes, KeyValue, Str, Value};

use phoenix_config::receiver::procfs::ProcfsConfig;

/// The identifying strings of one process (interned where shared).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub pid: u32,
    pub ppid: u32,
    /// RFC 3339, e.g. `2026-11-25T17:36:12.340Z`.
    pub creation_time: Str,
    pub executable_name: Str,
    /// `None` when `/proc/PID/exe` is unreadable (kernel thread, zombie,
    /// another user's process when not root).
    pub executable_path: Option<Str>,
    /// `None` when the command line is empty (kernel thread, zombie).
    pub command: Option<Str>,
    pub command_line: Option<Str>,
    pub owner: Option<Str>,
    /// From `/proc/PID/cgroup`; `Container::default()` outside a container
    /// or when no container attribute is enabled.
    pub container: Container,
}

/// Where a process runs, as its cgroup says (`cgroup.rs`), interned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    pub id: Option<Str>,
    pub runtime: Option<Str>,
    pub pod_uid: Option<Str>,
    /// The cgroup line itself (`process.linux.cgroup`).
    pub cgroup: Option<Str>,
}

/// The key of each enabled resource attribute (`None` = disabled), shared by
/// every attribute set the receiver builds.
#[derive(Debug, Clone)]
pub struct AttrKeys {
    pub pid: Option<Str>,
    pub parent_pid: Option<Str>,
    pub creation_time: Option<Str>,
    pub executable_name: Option<Str>,
    pub executable_path: Option<Str>,
    pub command: Option<Str>,
    pub command_line: Option<Str>,
    pub owner: Option<Str>,
    pub container_id: Option<Str>,
    pub container_runtime: Option<Str>,
    pub pod_uid: Option<Str>,
    pub cgroup: Option<Str>,
}

impl AttrKeys {
    pub fn new(config: &ProcfsConfig) -> AttrKeys {
        // The key in the configured naming (`process.cgroup` for the Collector).
        let key = |name: &str| config.attribute_key(name).map(Str::from);
        AttrKeys {
            pid: key(semconv::PROCESS_PID),
            parent_pid: key(semconv::PROCESS_PARENT_PID),
            creation_time: key(semconv::PROCESS_CREATION_TIME),
            executable_name: key(semconv::PROCESS_EXECUTABLE_NAME),
            executable_path: key(semconv::PROCESS_EXECUTABLE_PATH),
            command: key(semconv::PROCESS_COMMAND),
            command_line: key(semconv::PROCESS_COMMAND_LINE),
            owner: key(semconv::PROCESS_OWNER),
            container_id: key(semconv::CONTAINER_ID),
            container_runtime: key(semconv::CONTAINER_RUNTIME_NAME),
            pod_uid: key(semconv::K8S_POD_UID),
            cgroup: key(semconv::PROCESS_LINUX_CGROUP),
        }
    }

    /// Whether `/proc/PID/cmdline` has to be read at all.
    pub fn needs_cmdline(&self) -> bool {
        self.command.is_some() || self.command_line.is_some()
    }

    /// Whether `/proc/PID/exe` has to be read at all (the name falls back to comm).
    pub fn needs_exe(&self) -> bool {
        self.executable_name.is_some() || self.executable_path.is_some()
    }

    pub fn needs_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether `/proc/PID/cgroup` has to be read at all.
    pub fn needs_cgroup(&self) -> bool {
        self.container_id.is_some()
            || self.container_runtime.is_some()
            || self.pod_uid.is_some()
            || self.cgroup.is_some()
    }

    /// The resource attributes of `id`; unknown values are left out rather
    /// than sent as empty strings.
    pub fn build(&self, id: &Identity) -> Attributes {
        let mut pairs = Vec::with_capacity(12);
        let mut put = |key: &Option<Str>, value: Option<Value>| {
            if let (Some(k), Some(v)) = (key, value) {
                pairs.push(KeyValue::new(k.clone(), v));
            }
        };
        put(&self.pid, Some(Value::Int(i64::from(id.pid))));
        put(&self.parent_pid, Some(Value::Int(i64::from(id.ppid))));
        put(
            &self.creation_time,
            Some(Value::Str(id.creation_time.clone())),
        );
        put(
            &self.executable_name,
            Some(Value::Str(id.executable_name.clone())),
        );
        put(
            &self.executable_path,
            id.executable_path.clone().map(Value::Str),
        );
        put(&self.command, id.command.clone().map(Value::Str));
        put(&self.command_line, id.command_line.clone().map(Value::Str));
        put(&self.owner, id.owner.clone().map(Value::Str));
        let c = &id.container;
        put(&self.container_id, c.id.clone().map(Value::Str));
        put(&self.container_runtime, c.runtime.clone().map(Value::Str));
        put(&self.pod_uid, c.pod_uid.clone().map(Value::Str));
        put(&self.cgroup, c.cgroup.clone().map(Value::Str));
        Attributes::new(pairs)
    }
}

/// CPU times at one scrape, for the next scrape's utilization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample {
    pub utime: u64,
    pub stime: u64,
    /// Block I/O wait ticks (0 when not read).
    pub blkio: u64,
    pub at: Instant,
}

/// A stable 64-bit identity for the process (PID, start time): the same on
/// every scrape and every agent restart, different for a reused PID.
/// splitmix64's finaliser spreads the bits, so that processors that bucket
/// by it do not see PIDs' sequential patterns.
pub fn identity_key(pid: u32, starttime: u64) -> u64 {
    mix64((u64::from(pid) << 32 | u64::from(pid)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ starttime)
}

/// One cached process.
#[derive(Debug, Clone)]
pub struct CachedProcess {
    /// Start time after boot in clock ticks: with the PID, the identity.
    pub starttime: u64,
    /// The comm seen when the identity was read: a change means the process
    /// exec'd (or renamed itself), so its identity is read again.
    pub comm: Box<[u8]>,
    pub creation_unix_nano: u64,
    /// `Resource::identity`: a stable hash of PID and start time.
    pub key: u64,
    pub identity: Identity,
    pub attributes: Attributes,
    pub prev_cpu: Option<CpuSample>,
    seen: u64,
}

impl CachedProcess {
    pub fn new(
        starttime: u64,
        comm: &[u8],
        creation_unix_nano: u64,
        identity: Identity,
        keys: &AttrKeys,
    ) -> CachedProcess {
        CachedProcess {
            starttime,
            comm: comm.into(),
            creation_unix_nano,
            key: identity_key(identity.pid, starttime),
            attributes: keys.build(&identity),
            identity,
            prev_cpu: None,
            seen: 0,
        }
    }

    /// Point at a freshly read identity of the same process (after an exec),
    /// keeping its CPU history.
    pub fn reidentify(&mut self, comm: &[u8], identity: Identity, keys: &AttrKeys) {
        self.comm = comm.into();
        self.attributes = keys.build(&identity);
        self.identity = identity;
    }

    /// Record a new parent (the old one exited and the process was
    /// re-parented to init or a subreaper).
    pub fn set_parent(&mut self, ppid: u32, keys: &AttrKeys) {
        self.identity.ppid = ppid;
        self.attributes = keys.build(&self.identity);
    }
}

/// PID → cached process, with mark-and-sweep eviction of processes that
/// were not seen in a scrape.
#[derive(Debug, Default)]
pub struct ProcessCache {
    entries: HashMap<u32, CachedProcess>,
    generation: u64,
}

impl ProcessCache {
    /// Start a scrape: entries not touched until [`Self::evict_unseen`] go.
    pub fn begin_scrape(&mut self) {
        self.generation += 1;
    }

    /// The entry of `pid` if it is the process that started at `starttime`;
    /// otherwise (never seen, or the PID now belongs to a new process) the
    /// one `make` builds, cached in its place. `None` when `make` gives none.
    /// The entry returned is marked as seen by this scrape. One hash lookup
    /// either way: this runs for every process of every scrape.
    pub fn get_or_insert_with(
        &mut self,
        pid: u32,
        starttime: u64,
        make: impl FnOnce() -> Option<CachedProcess>,
    ) -> Option<&mut CachedProcess> {
        let process = match self.entries.entry(pid) {
            MapEntry::Occupied(e) if e.get().starttime == starttime => e.into_mut(),
            MapEntry::Occupied(mut e) => {
                e.insert(make()?);
                e.into_mut()
            }
            MapEntry::Vacant(e) => e.insert(make()?),
        };
        process.seen = self.generation;
        Some(process)
    }

    /// Drop the processes this scrape did not see; returns how many.
    pub fn evict_unseen(&mut self) -> usize {
        let before = self.entries.len();
        let generation = self.generation;
        self.entries.retain(|_, e| e.seen == generation);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(pid: u32, name: &str) -> Identity {
        Identity {
            pid,
            ppid: 1,
            creation_time: "2026-01-01T00:00:00.000Z".into(),
            executable_name: name.into(),
            executable_path: Some(format!("/usr/bin/{name}").into()),
            command: Some(name.into()),
            command_line: None,
            owner: Some("root".into()),
            container: Container::default(),
        }
    }

    #[test]
    fn attributes_follow_toggles_and_skip_unknown_values() {
        let mut config = ProcfsConfig::default();
        config.resource_attributes.insert(
            semconv::PROCESS_OWNER.into(),
            phoenix_config::receiver::procfs::Toggle { enabled: false },
        );
        let keys = AttrKeys::new(&config);
        let attrs = keys.build(&identity(42, "nginx"));
        let names: Vec<&str> = attrs.iter().map(|kv| &*kv.key).collect();
        // No owner (disabled), no command_line (unknown).
        assert_eq!(
            names,
            [
                "process.pid",
                "process.parent_pid",
                "process.creation.time",
                "process.executable.name",
                "process.executable.path",
                "process.command"
            ]
        );
        assert_eq!(attrs.get("process.pid"), Some(&Value::Int(42)));
        assert_eq!(
            attrs.get_str("process.executable.path"),
            Some("/usr/bin/nginx")
        );
        assert!(keys.needs_cmdline() && keys.needs_exe() && !keys.needs_owner());
    }

    #[test]
    fn same_pid_new_start_time_is_a_new_process_and_unseen_are_evicted() {
        let keys = AttrKeys::new(&ProcfsConfig::default());
        let mut cache = ProcessCache::default();
        let make = |pid, starttime, name: &str| {
            let keys = &keys;
            let name = name.to_string();
            move || {
                Some(CachedProcess::new(
                    starttime,
                    name.as_bytes(),
                    1,
                    identity(pid, &name),
                    keys,
                ))
            }
        };
        cache.begin_scrape();
        cache.get_or_insert_with(7, 100, make(7, 100, "a"));
        cache.get_or_insert_with(8, 100, make(8, 100, "b"));
        assert_eq!(cache.len(), 2);

        cache.begin_scrape();
        let same = cache
            .get_or_insert_with(7, 100, || panic!("same pid and start time: same process"))
            .expect("cached");
        assert_eq!(&*same.identity.executable_name, "a");
        // PID 8 was reused by a process that started later: it replaces the old one.
        let reused = cache
            .get_or_insert_with(8, 250, make(8, 250, "c"))
            .expect("new process");
        assert_eq!(&*reused.identity.executable_name, "c");
        assert_eq!(cache.evict_unseen(), 0);
        assert_eq!(cache.len(), 2);

        cache.begin_scrape();
        assert!(cache.get_or_insert_with(8, 250, || None).is_some());
        // A PID whose identity could not be read is not cached.
        assert!(cache.get_or_insert_with(9, 1, || None).is_none());
        assert_eq!(cache.evict_unseen(), 1, "pid 7 was not seen");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn identity_key_separates_pid_reuse() {
        assert_eq!(identity_key(42, 1000), identity_key(42, 1000));
        assert_ne!(identity_key(42, 1000), identity_key(42, 1001));
        assert_ne!(identity_key(42, 1000), identity_key(43, 1000));
        // Not a plain combination a swapped pair would collide in.
        assert_ne!(identity_key(1, 2), identity_key(2, 1));
        // Stable across releases: sampling decisions made by identity must
        // not change with an upgrade.
        assert_eq!(identity_key(42, 1000), 0x6bf2_3af2_28bc_a09c);
    }

    #[test]
    fn reparenting_rebuilds_attributes() {
        let keys = AttrKeys::new(&ProcfsConfig::default());
        let mut p = CachedProcess::new(1, b"x", 0, identity(9, "x"), &keys);
        let before = p.attributes.clone();
        p.set_parent(1234, &keys);
        assert_eq!(
            p.attributes.get("process.parent_pid"),
            Some(&Value::Int(1234))
        );
        assert_eq!(before.get("process.parent_pid"), Some(&Value::Int(1)));
    }
}
