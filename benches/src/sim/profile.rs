//! What `phoenix-sim` runs: a profile is a list of process groups, each a
//! number of identical processes with one name and one workload.
//!
//! A profile is checked completely while it is parsed, so every problem —
//! a typo in a key, a value out of range, two settings that contradict each
//! other — is reported with the line and column of the YAML it comes from,
//! and nothing is spawned until the whole profile is valid. See
//! `docs/SIMULATOR.md` for the schema.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::HumanDuration;

/// At most this many processes in one profile: far above the scenarios
/// Phoenix measures (2,000), low enough that a typo (`count: 200000`)
/// cannot fork-bomb the machine.
pub const MAX_PROCESSES: u64 = 50_000;
/// Threads per process.
pub const MAX_THREADS: u32 = 4_096;
/// Memory per process, MiB (64 GiB).
pub const MAX_MEMORY_MIB: u64 = 64 * 1024;
/// Replacements per second in one group.
pub const MAX_CHURN_PER_SECOND: f64 = 1_000.0;

/// A named set of process groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub groups: Vec<Group>,
}

/// `count` identical processes named `name`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// The executable's file name, which is also the process's comm (the
    /// kernel truncates comm to 15 bytes).
    pub name: String,
    /// Processes kept running.
    pub count: u32,
    /// CPU each process burns, in percent of one core (150 = 1.5 cores,
    /// which needs at least 2 threads).
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_percent: f64,
    /// MiB each process allocates and touches, on top of its own baseline.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub memory_mib: u64,
    /// Threads per process, the main thread included.
    #[serde(skip_serializing_if = "is_one")]
    pub threads: u32,
    /// Each process exits by itself after this long; `None`: it runs until
    /// the simulator stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<HumanDuration>,
    /// Processes of this group the simulator stops (oldest first) and
    /// replaces per second.
    #[serde(skip_serializing_if = "is_zero")]
    pub churn_per_second: f64,
    /// Replace processes that exit, to keep `count` running.
    #[serde(skip_serializing_if = "is_true")]
    pub respawn: bool,
    /// Command-line arguments after the name, so `/proc/PID/cmdline` looks
    /// like the real program's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_one(v: &u32) -> bool {
    *v == 1
}
fn is_true(v: &bool) -> bool {
    *v
}

impl Group {
    /// An idle, single-threaded group with no extra memory: the defaults of
    /// the YAML schema.
    pub fn new(name: &str, count: u32) -> Group {
        Group {
            name: name.to_string(),
            count,
            cpu_percent: 0.0,
            memory_mib: 0,
            threads: 1,
            lifetime: None,
            churn_per_second: 0.0,
            respawn: true,
            args: Vec::new(),
        }
    }

    pub fn cpu(mut self, percent: f64) -> Group {
        self.cpu_percent = percent;
        self
    }

    pub fn memory(mut self, mib: u64) -> Group {
        self.memory_mib = mib;
        self
    }

    pub fn threads(mut self, threads: u32) -> Group {
        self.threads = threads;
        self
    }

    pub fn lifetime(mut self, lifetime: HumanDuration) -> Group {
        self.lifetime = Some(lifetime);
        self
    }

    pub fn churn(mut self, per_second: f64) -> Group {
        self.churn_per_second = per_second;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Group {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Every rule a group must satisfy; the first one broken, as a sentence.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name)?;
        if self.count == 0 || u64::from(self.count) > MAX_PROCESSES {
            return Err(format!(
                "count must be between 1 and {MAX_PROCESSES}, not {}",
                self.count
            ));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(format!(
                "threads must be between 1 and {MAX_THREADS}, not {}",
                self.threads
            ));
        }
        if !self.cpu_percent.is_finite() || self.cpu_percent < 0.0 {
            return Err(format!(
                "cpu_percent must be 0 or more, not {}",
                self.cpu_percent
            ));
        }
        if self.cpu_percent > 100.0 * f64::from(self.threads) {
            return Err(format!(
                "cpu_percent {} needs at least {} threads (a thread burns at most one core), but threads is {}",
                self.cpu_percent,
                (self.cpu_percent / 100.0).ceil(),
                self.threads
            ));
        }
        if self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "memory_mib must be at most {MAX_MEMORY_MIB}, not {}",
                self.memory_mib
            ));
        }
        if let Some(l) = self.lifetime
            && l.0.is_zero()
        {
            return Err(
                "lifetime must be longer than 0 (leave it out to run until the simulator stops)"
                    .into(),
            );
        }
        if !self.churn_per_second.is_finite()
            || self.churn_per_second < 0.0
            || self.churn_per_second > MAX_CHURN_PER_SECOND
        {
            return Err(format!(
                "churn_per_second must be between 0 and {MAX_CHURN_PER_SECOND}, not {}",
                self.churn_per_second
            ));
        }
        if self.churn_per_second > 0.0 && !self.respawn {
            return Err(
                "churn_per_second replaces processes, which needs respawn: true".to_string(),
            );
        }
        if let Some(a) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(format!("args must not contain NUL bytes: {a:?}"));
        }
        Ok(())
    }
}

/// The name becomes a file name (and comm): one path component, no NUL.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > 255 {
        return Err(format!(
            "name must be at most 255 bytes (a file name), not {}",
            name.len()
        ));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "name {name:?} must be a plain file name (no '/', not '.' or '..')"
        ));
    }
    Ok(())
}

/// What a profile asks of the machine, summed over its groups.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub processes: u64,
    pub threads: u64,
    /// MiB allocated by the workloads (each process's own baseline excluded).
    pub memory_mib: u64,
    /// Percent of one core.
    pub cpu_percent: f64,
    /// Spawns per second in the steady state (churn, plus lifetimes of
    /// respawned groups).
    pub spawns_per_second: f64,
}

impl Profile {
    pub fn validate(&self) -> Result<(), String> {
        if self.groups.is_empty() {
            return Err("groups must list at least one group".into());
        }
        for (i, g) in self.groups.iter().enumerate() {
            g.validate()
                .map_err(|e| format!("groups[{i}] ({}): {e}", g.name))?;
        }
        let total = self.totals().processes;
        if total > MAX_PROCESSES {
            return Err(format!(
                "the groups add up to {total} processes; at most {MAX_PROCESSES} are allowed"
            ));
        }
        Ok(())
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for g in &self.groups {
            let n = u64::from(g.count);
            t.processes += n;
            t.threads += n * u64::from(g.threads);
            t.memory_mib += n * g.memory_mib;
            t.cpu_percent += f64::from(g.count) * g.cpu_percent;
            t.spawns_per_second += g.churn_per_second;
            if g.respawn
                && let Some(l) = g.lifetime
            {
                t.spawns_per_second += f64::from(g.count) / l.0.as_secs_f64();
            }
        }
        t
    }

    /// The profile as YAML, in the schema [`parse`] reads.
    pub fn to_yaml(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_norway::to_string(self).unwrap_or_default()
    }
}

/// The raw YAML of a group, before its rules are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    count: u32,
    #[serde(default)]
    cpu_percent: f64,
    #[serde(default)]
    memory_mib: u64,
    #[serde(default = "one")]
    threads: u32,
    #[serde(default)]
    lifetime: Option<HumanDuration>,
    #[serde(default)]
    churn_per_second: f64,
    #[serde(default = "yes")]
    respawn: bool,
    #[serde(default)]
    args: Vec<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default = "custom")]
    name: String,
    groups: Vec<Group>,
}

fn custom() -> String {
    "custom".into()
}

impl<'de> Deserialize<'de> for Group {
    /// Through a map visitor rather than `try_from`, so that a rule broken
    /// by the group is reported from inside the deserializer's visit of that
    /// group's mapping, which is where serde_norway attaches its line and
    /// column (and the `groups[i]` path).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Group;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a group: a mapping with at least name and count")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Group, A::Error> {
                let r = RawGroup::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let g = Group {
                    name: r.name,
                    count: r.count,
                    cpu_percent: r.cpu_percent,
                    memory_mib: r.memory_mib,
                    threads: r.threads,
                    lifetime: r.lifetime,
                    churn_per_second: r.churn_per_second,
                    respawn: r.respawn,
                    args: r.args,
                };
                g.validate().map_err(de::Error::custom)?;
                Ok(g)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Profile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a profile: a mapping with `groups`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Profile, A::Error> {
                let r = RawProfile::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let p = Profile {
                    name: r.name,
                    groups: r.groups,
                };
                p.validate().map_err(de::Error::custom)?;
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a profile could not be used: a sentence, and where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: Option<PathBuf>,
    /// 1-based line and column, when the problem has one.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some((line, column)) = self.location {
            write!(f, "line {line}, column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProfileError {}

/// Parse and check a profile.
pub fn parse(yaml: &str) -> Result<Profile, ProfileError> {
    serde_norway::from_str::<Profile>(yaml).map_err(|e| {
        let location = e.location().map(|l| (l.line(), l.column()));
        let mut message = e.to_string();
        // serde_norway appends " at line L column C"; the location is shown
        // once, up front, in the same words as the agent's config errors.
        if let Some((line, column)) = location {
            let suffix = format!(" at line {line} column {column}");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
        }
        if yaml.trim().is_empty() {
            message = "the profile is empty; it needs at least `groups:`".into();
        }
        ProfileError {
            file: None,
            location,
            message,
        }
    })
}

/// Read, parse and check the profile in `path`.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
        file: Some(path.to_path_buf()),
        location: None,
        message: format!("cannot read the profile: {e}"),
    })?;
    parse(&text).map_err(|e| ProfileError {
        file: Some(path.to_path_buf()),
        ..e
    })
}

/// The names of the built-in profiles, for `--help` and errors.
pub const BUILTIN: &[&str] = &["realistic", "high-cardinality", "high-churn"];

/// A built-in profile by name.
pub fn builtin(name: &str) -> Option<Profile> {
    match name {
        "realistic" => Some(realistic()),
        "high-cardinality" => Some(high_cardinality()),
        "high-churn" => Some(high_churn()),
        _ => None,
    }
}

/// About 150 processes shaped like a Kubernetes node running a few
/// services: databases, web servers, language runtimes, the node's system
/// daemons and container plumbing, and short-lived tools. Footprints are
/// scaled down from production (about 1 GiB and a third of a core in all)
/// so the simulation fits beside the agent and a build on a small machine,
/// while keeping production's *shape*: a few big, busy processes, a long
/// tail of small idle ones, and comm names the kernel truncates.
pub fn realistic() -> Profile {
    let s = HumanDuration::from_secs;
    Profile {
        name: "realistic".into(),
        groups: vec![
            // Databases.
            Group::new("postgres", 10)
                .cpu(0.5)
                .memory(12)
                .args(&["-D", "/var/lib/postgresql/16/main"]),
            Group::new("mysqld", 1)
                .cpu(1.0)
                .memory(64)
                .threads(24)
                .args(&["--datadir=/var/lib/mysql"]),
            Group::new("redis-server", 2)
                .cpu(0.5)
                .memory(24)
                .threads(5)
                .args(&["*:6379"]),
            Group::new("memcached", 1)
                .cpu(0.2)
                .memory(32)
                .threads(10)
                .args(&["-m", "64", "-p", "11211"]),
            // Web servers and proxies.
            Group::new("nginx", 5)
                .cpu(0.3)
                .memory(6)
                .args(&["-g", "daemon off;"]),
            Group::new("envoy", 2)
                .cpu(0.8)
                .memory(24)
                .threads(12)
                .args(&["-c", "/etc/envoy/envoy.yaml"]),
            Group::new("haproxy", 1)
                .cpu(0.2)
                .memory(8)
                .threads(2)
                .args(&["-f", "/etc/haproxy/haproxy.cfg"]),
            // Language runtimes.
            Group::new("java", 3)
                .cpu(1.5)
                .memory(64)
                .threads(40)
                .args(&["-Xmx512m", "-jar", "/opt/app/service.jar"]),
            Group::new("node", 8)
                .cpu(0.6)
                .memory(16)
                .threads(11)
                .args(&["/srv/app/server.js"]),
            Group::new("python3", 14)
                .cpu(0.2)
                .memory(8)
                .threads(2)
                .args(&["/opt/app/worker.py", "--queue", "default"]),
            Group::new("gunicorn", 4).cpu(0.3).memory(12).args(&[
                "app.wsgi:application",
                "--workers",
                "4",
            ]),
            Group::new("php-fpm8.2", 12)
                .cpu(0.15)
                .memory(6)
                .args(&["--nodaemonize"]),
            // System daemons.
            Group::new("systemd-journald", 1).cpu(0.1).memory(8),
            Group::new("sshd", 4).memory(2).args(&["-D"]),
            Group::new("cron", 1).memory(1).args(&["-f"]),
            Group::new("rsyslogd", 1).memory(2).threads(4).args(&["-n"]),
            Group::new("dbus-daemon", 1)
                .memory(2)
                .args(&["--system", "--nofork"]),
            Group::new("chronyd", 1).memory(1).args(&["-F", "1"]),
            Group::new("agetty", 1).args(&["-o", "-p -- \\u", "--noclear", "tty1"]),
            Group::new("bash", 8).memory(1),
            // Container plumbing.
            Group::new("containerd", 1).cpu(0.5).memory(32).threads(20),
            Group::new("containerd-shim-runc-v2", 24)
                .memory(2)
                .threads(10)
                .args(&[
                    "-namespace",
                    "k8s.io",
                    "-address",
                    "/run/containerd/containerd.sock",
                ]),
            Group::new("pause", 24),
            Group::new("kubelet", 1)
                .cpu(1.0)
                .memory(64)
                .threads(24)
                .args(&["--config=/var/lib/kubelet/config.yaml"]),
            Group::new("kube-proxy", 1).cpu(0.2).memory(16).threads(8),
            Group::new("coredns", 2)
                .cpu(0.2)
                .memory(16)
                .threads(10)
                .args(&["-conf", "/etc/coredns/Corefile"]),
            Group::new("node_exporter", 1)
                .cpu(0.2)
                .memory(12)
                .threads(6),
            Group::new("fluent-bit", 1)
                .cpu(0.3)
                .memory(16)
                .threads(6)
                .args(&["-c", "/fluent-bit/etc/fluent-bit.conf"]),
            // Short-lived tools, respawned as they exit.
            Group::new("sh", 5)
                .lifetime(s(3))
                .args(&["-c", "/usr/local/bin/healthcheck"]),
            Group::new("curl", 2)
                .memory(1)
                .lifetime(s(2))
                .args(&["-sf", "http://127.0.0.1:8080/healthz"]),
            Group::new("grep", 2).lifetime(s(1)).args(&["-c", "ERROR"]),
            Group::new("ps", 1).lifetime(s(1)).args(&["aux"]),
            Group::new("sleep", 4).lifetime(s(5)).args(&["5"]),
        ],
    }
}

/// 2,000 processes, as on a node packed with small containers: almost all
/// idle, no extra memory, few threads — what costs a process-metrics agent
/// is the number of processes, and this is the population Phoenix's
/// targets are stated for.
pub fn high_cardinality() -> Profile {
    Profile {
        name: "high-cardinality".into(),
        groups: vec![
            Group::new("php-fpm8.2", 400).args(&["--nodaemonize"]),
            Group::new("python3", 300).args(&["/opt/app/worker.py"]),
            Group::new("node", 200)
                .threads(3)
                .args(&["/srv/app/server.js"]),
            Group::new("java", 50)
                .cpu(0.2)
                .threads(8)
                .args(&["-jar", "/opt/app/service.jar"]),
            Group::new("envoy", 150)
                .cpu(0.1)
                .threads(2)
                .args(&["-c", "/etc/envoy/envoy.yaml"]),
            Group::new("pause", 300),
            Group::new("containerd-shim-runc-v2", 300)
                .threads(3)
                .args(&["-namespace", "k8s.io"]),
            Group::new("nginx", 150).args(&["-g", "daemon off;"]),
            Group::new("gunicorn", 100).args(&["app.wsgi:application"]),
            Group::new("sidekiq", 50).threads(2),
        ],
    }
}

/// 20–30 processes started and ended per second around a small steady
/// population: what a CI runner or a cron-heavy host looks like, and what
/// exercises a receiver's handling of PIDs that vanish mid-scrape.
pub fn high_churn() -> Profile {
    Profile {
        name: "high-churn".into(),
        groups: vec![
            Group::new("nginx", 4)
                .memory(4)
                .args(&["-g", "daemon off;"]),
            Group::new("postgres", 4)
                .cpu(0.5)
                .memory(8)
                .args(&["-D", "/var/lib/postgresql/16/main"]),
            Group::new("python3", 8)
                .memory(4)
                .args(&["/opt/app/worker.py"]),
            Group::new("sshd", 2).args(&["-D"]),
            Group::new("cron", 1).args(&["-f"]),
            Group::new("containerd", 1).memory(8).threads(8),
            Group::new("kubelet", 1).cpu(0.5).memory(16).threads(12),
            Group::new("bash", 4),
            // Stopped and replaced by the simulator, oldest first: 10/s.
            Group::new("sh", 10)
                .churn(10.0)
                .args(&["-c", "/usr/local/bin/job"]),
            // Exit by themselves after a second and are respawned: ~10/s.
            Group::new("curl", 10)
                .lifetime(HumanDuration::from_secs(1))
                .args(&["-sf", "http://127.0.0.1:8080/healthz"]),
            Group::new("grep", 5).churn(5.0).args(&["-c", "ERROR"]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_sized_as_documented() {
        for name in BUILTIN {
            let p = builtin(name).expect("builtin");
            assert_eq!(p.name, *name);
            p.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            // What `phoenix-sim profile NAME` prints reads back identically.
            let again = parse(&p.to_yaml()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again, p, "{name}");
        }
        let r = realistic().totals();
        assert!((140..=160).contains(&r.processes), "{r:?}");
        assert!(r.memory_mib <= 1200, "{r:?}");
        assert!(r.cpu_percent <= 50.0, "{r:?}");
        assert_eq!(high_cardinality().totals().processes, 2_000);
        let churn = high_churn().totals().spawns_per_second;
        assert!((20.0..=30.0).contains(&churn), "{churn}");
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn minimal_group_gets_the_documented_defaults() {
        let p = parse("groups:\n  - name: phx-db\n    count: 3\n").expect("valid");
        assert_eq!(p.name, "custom");
        assert_eq!(p.groups, [Group::new("phx-db", 3)]);
    }

    #[test]
    fn every_field() {
        let p = parse(
            "name: mine\ngroups:\n  - name: postgres\n    count: 5\n    cpu_percent: 150\n    memory_mib: 8\n    threads: 2\n    lifetime: 30s\n    churn_per_second: 0.5\n    respawn: true\n    args: [-D, /data]\n",
        )
        .expect("valid");
        assert_eq!(p.name, "mine");
        let g = &p.groups[0];
        assert_eq!(g.cpu_percent, 150.0);
        assert_eq!(g.memory_mib, 8);
        assert_eq!(g.threads, 2);
        assert_eq!(g.lifetime, Some(HumanDuration::from_secs(30)));
        assert_eq!(g.churn_per_second, 0.5);
        assert_eq!(g.args, ["-D", "/data"]);
    }

    fn err(yaml: &str) -> ProfileError {
        parse(yaml).expect_err(yaml)
    }

    #[test]
    fn errors_carry_line_column_and_the_group() {
        let e = err("groups:\n  - name: db\n    count: 1\n    cpu: 5\n");
        assert_eq!(e.location, Some((4, 5)), "{e}");
        assert!(e.message.contains("unknown field `cpu`"), "{e}");
        assert!(
            e.message.contains("cpu_percent"),
            "lists the known fields: {e}"
        );

        let e = err("groups:\n  - name: db\n    count: 1\n  - name: web\n    count: 0\n");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
        assert!(
            e.message.starts_with("groups[1]: count must be between 1"),
            "{e}"
        );

        let e = err("groups:\n  - name: db\n    count: 1\n    cpu_percent: 250\n    threads: 2\n");
        assert!(e.message.contains("needs at least 3 threads"), "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(2), "{e}");

        let e = err("groups:\n  - name: db\n    count: -1\n");
        assert_eq!(e.location, Some((3, 12)), "{e}");

        let e = err("groups:\n  - name: db\n    count: 1\n    lifetime: soon\n");
        assert!(e.message.contains("invalid duration"), "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");

        let e = err("groups: [\n");
        assert!(e.location.is_some(), "syntax errors have a place too: {e}");
        assert!(e.to_string().starts_with("line "), "{e}");
    }

    #[test]
    fn contradictions_and_limits_are_rejected() {
        for (yaml, needle) in [
            ("groups: []", "at least one group"),
            ("name: x", "missing field `groups`"),
            ("", "empty"),
            ("groups:\n  - count: 1\n", "missing field `name`"),
            ("groups:\n  - name: a/b\n    count: 1\n", "plain file name"),
            ("groups:\n  - name: ''\n    count: 1\n", "must not be empty"),
            ("groups:\n  - name: ..\n    count: 1\n", "plain file name"),
            (
                "groups:\n  - name: x\n    count: 1\n    churn_per_second: 2\n    respawn: false\n",
                "needs respawn: true",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    churn_per_second: .nan\n",
                "churn_per_second",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    threads: 0\n",
                "threads",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    cpu_percent: -1\n",
                "cpu_percent",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    lifetime: 0s\n",
                "lifetime",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    memory_mib: 99999999\n",
                "memory_mib",
            ),
            (
                "groups:\n  - name: x\n    count: 40000\n  - name: y\n    count: 40000\n",
                "add up to 80000",
            ),
            (
                "groups:\n  - name: x\n    count: 1\n    args: \"-v\"\n",
                "invalid type",
            ),
            ("- 1\n- 2\n", "invalid type"),
        ] {
            let e = err(yaml);
            assert!(e.to_string().contains(needle), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let e = load(Path::new("/nonexistent/phoenix-sim/profile.yaml")).expect_err("missing");
        let text = e.to_string();
        assert!(
            text.starts_with("/nonexistent/phoenix-sim/profile.yaml: cannot read"),
            "{text}"
        );
    }
}
