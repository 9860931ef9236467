//! Who lives in a synthetic `/proc`: the kinds of process a busy Kubernetes
//! node runs, how often each occurs, and what each looks like (command
//! line, owner, threads, memory, CPU, I/O, descriptors, parent, lifetime).
//!
//! The mix is heavy-tailed the way real nodes are: a handful of one-per-host
//! daemons, thousands of container processes and pauses, a long tail of
//! workers, and short-lived tools that come and go every tick.

/// Who a process's parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// PID 1.
    Init,
    /// The oldest living process of the same kind (postgres backends under
    /// the postmaster, nginx workers under the master).
    Master,
    /// A living process whose comm is this (a container's process under
    /// its shim, a shell's tools under the shell).
    Kind(&'static str),
}

/// One kind of process.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// What the kernel shows as comm (truncated to 15 bytes when written).
    pub comm: &'static str,
    pub exe: &'static str,
    /// argv; `{n}` becomes the instance number. A single element with
    /// spaces is a title set with setproctitle (postgres, nginx, sshd).
    pub args: &'static [&'static str],
    pub user: &'static str,
    /// Relative frequency; 0 = exactly one per host.
    pub weight: u32,
    pub threads: (u32, u32),
    /// Resident memory range, MiB.
    pub rss_mib: (f64, f64),
    /// Cores used when active (log-uniform between 1/10 and this).
    pub cpu: f64,
    /// Probability that the process does anything in a tick.
    pub active: f64,
    /// Disk bytes per second when active.
    pub io: f64,
    pub fds: (u32, u32),
    /// Ends within a tick or two (shell tools).
    pub short: bool,
    pub parent: Parent,
}

const fn kind(comm: &'static str, exe: &'static str, args: &'static [&'static str]) -> Kind {
    Kind {
        comm,
        exe,
        args,
        user: "root",
        weight: 0,
        threads: (1, 1),
        rss_mib: (2.0, 8.0),
        cpu: 0.001,
        active: 0.1,
        io: 0.0,
        fds: (3, 8),
        short: false,
        parent: Parent::Init,
    }
}

/// `systemd`, always PID 1, and the other one-per-host daemons first
/// (weight 0), then the weighted population.
pub static KINDS: &[Kind] = &[
    Kind {
        threads: (1, 1),
        rss_mib: (8.0, 14.0),
        fds: (40, 120),
        active: 0.5,
        ..kind(
            "systemd",
            "/usr/lib/systemd/systemd",
            &["/sbin/init", "splash"],
        )
    },
    Kind {
        rss_mib: (16.0, 64.0),
        fds: (20, 40),
        active: 0.9,
        io: 40_000.0,
        cpu: 0.002,
        ..kind(
            "systemd-journald",
            "/usr/lib/systemd/systemd-journald",
            &["/usr/lib/systemd/systemd-journald"],
        )
    },
    Kind {
        rss_mib: (4.0, 8.0),
        ..kind(
            "systemd-udevd",
            "/usr/bin/udevadm",
            &["/usr/lib/systemd/systemd-udevd"],
        )
    },
    Kind {
        user: "messagebus",
        rss_mib: (3.0, 6.0),
        ..kind(
            "dbus-daemon",
            "/usr/bin/dbus-daemon",
            &[
                "@dbus-daemon",
                "--system",
                "--address=systemd:",
                "--nofork",
                "--nopidfile",
                "--systemd-activation",
                "--syslog-only",
            ],
        )
    },
    kind("cron", "/usr/sbin/cron", &["/usr/sbin/cron", "-f", "-P"]),
    Kind {
        user: "syslog",
        threads: (4, 4),
        io: 20_000.0,
        active: 0.8,
        ..kind(
            "rsyslogd",
            "/usr/sbin/rsyslogd",
            &["/usr/sbin/rsyslogd", "-n", "-iNONE"],
        )
    },
    kind(
        "sshd",
        "/usr/sbin/sshd",
        &["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
    ),
    Kind {
        user: "_chrony",
        ..kind(
            "chronyd",
            "/usr/sbin/chronyd",
            &["/usr/sbin/chronyd", "-F", "1"],
        )
    },
    kind(
        "agetty",
        "/usr/sbin/agetty",
        &[
            "/sbin/agetty",
            "-o",
            "-p -- \\u",
            "--noclear",
            "tty1",
            "linux",
        ],
    ),
    Kind {
        threads: (18, 30),
        rss_mib: (40.0, 90.0),
        cpu: 0.02,
        active: 1.0,
        io: 100_000.0,
        fds: (60, 200),
        ..kind(
            "containerd",
            "/usr/bin/containerd",
            &["/usr/bin/containerd"],
        )
    },
    Kind {
        threads: (20, 40),
        rss_mib: (60.0, 140.0),
        cpu: 0.05,
        active: 1.0,
        io: 200_000.0,
        fds: (40, 120),
        ..kind(
            "kubelet",
            "/usr/bin/kubelet",
            &[
                "/usr/bin/kubelet",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml",
                "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            ],
        )
    },
    Kind {
        threads: (6, 12),
        rss_mib: (20.0, 40.0),
        cpu: 0.005,
        active: 0.9,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "kube-proxy",
            "/usr/local/bin/kube-proxy",
            &[
                "/usr/local/bin/kube-proxy",
                "--config=/var/lib/kube-proxy/config.conf",
                "--hostname-override=node-1",
            ],
        )
    },
    Kind {
        user: "nobody",
        threads: (5, 9),
        rss_mib: (15.0, 30.0),
        cpu: 0.01,
        active: 0.9,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "node_exporter",
            "/bin/node_exporter",
            &["/bin/node_exporter", "--path.rootfs=/host"],
        )
    },
    Kind {
        threads: (4, 8),
        rss_mib: (20.0, 60.0),
        cpu: 0.01,
        active: 1.0,
        io: 50_000.0,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "fluent-bit",
            "/fluent-bit/bin/fluent-bit",
            &[
                "/fluent-bit/bin/fluent-bit",
                "-c",
                "/fluent-bit/etc/fluent-bit.conf",
            ],
        )
    },
    // The weighted population.
    Kind {
        weight: 60,
        threads: (8, 12),
        rss_mib: (5.0, 14.0),
        fds: (10, 20),
        ..kind(
            "containerd-shim",
            "/usr/bin/containerd-shim-runc-v2",
            &[
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "k8s.io",
                "-id",
                "{n}",
                "-address",
                "/run/containerd/containerd.sock",
            ],
        )
    },
    Kind {
        user: "nobody",
        weight: 60,
        rss_mib: (0.2, 0.5),
        active: 0.01,
        fds: (3, 4),
        parent: Parent::Kind("containerd-shim"),
        ..kind("pause", "/pause", &["/pause"])
    },
    Kind {
        user: "www-data",
        weight: 40,
        rss_mib: (4.0, 16.0),
        cpu: 0.01,
        active: 0.6,
        io: 5_000.0,
        fds: (8, 30),
        parent: Parent::Master,
        ..kind("nginx", "/usr/sbin/nginx", &["nginx: worker process"])
    },
    Kind {
        user: "postgres",
        weight: 30,
        rss_mib: (8.0, 80.0),
        cpu: 0.03,
        active: 0.7,
        io: 500_000.0,
        fds: (10, 40),
        parent: Parent::Master,
        ..kind(
            "postgres",
            "/usr/lib/postgresql/16/bin/postgres",
            &["postgres: 16/main: app appdb 10.0.{n}.17(54322) idle"],
        )
    },
    Kind {
        user: "www-data",
        weight: 60,
        rss_mib: (8.0, 40.0),
        cpu: 0.02,
        active: 0.5,
        io: 2_000.0,
        parent: Parent::Master,
        ..kind("php-fpm8.2", "/usr/sbin/php-fpm8.2", &["php-fpm: pool www"])
    },
    Kind {
        user: "app",
        weight: 50,
        threads: (1, 4),
        rss_mib: (15.0, 120.0),
        cpu: 0.05,
        active: 0.6,
        io: 10_000.0,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "python3",
            "/usr/bin/python3.11",
            &["/usr/bin/python3", "/opt/app/worker.py", "--worker-id={n}"],
        )
    },
    Kind {
        user: "app",
        weight: 25,
        threads: (1, 2),
        rss_mib: (30.0, 90.0),
        cpu: 0.03,
        active: 0.6,
        parent: Parent::Master,
        ..kind(
            "gunicorn",
            "/usr/bin/python3.11",
            &[
                "/usr/bin/python3",
                "/usr/local/bin/gunicorn",
                "app.wsgi:application",
                "--bind",
                "0.0.0.0:8000",
                "--workers",
                "4",
            ],
        )
    },
    Kind {
        user: "app",
        weight: 40,
        threads: (7, 11),
        rss_mib: (40.0, 300.0),
        cpu: 0.05,
        active: 0.7,
        io: 5_000.0,
        fds: (20, 60),
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "node",
            "/usr/local/bin/node",
            &["node", "/srv/app/server.js", "--port={n}"],
        )
    },
    Kind {
        user: "app",
        weight: 15,
        threads: (25, 90),
        rss_mib: (200.0, 1500.0),
        cpu: 0.2,
        active: 0.9,
        io: 50_000.0,
        fds: (50, 150),
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "java",
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            &[
                "java",
                "-Xms512m",
                "-Xmx2g",
                "-XX:+UseG1GC",
                "-Dspring.profiles.active=production",
                "-jar",
                "/opt/app/service-{n}.jar",
            ],
        )
    },
    Kind {
        weight: 25,
        threads: (8, 16),
        rss_mib: (30.0, 90.0),
        cpu: 0.03,
        active: 0.9,
        fds: (30, 80),
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "envoy",
            "/usr/local/bin/envoy",
            &[
                "envoy",
                "-c",
                "/etc/istio/proxy/envoy-rev.json",
                "--drain-time-s",
                "45",
                "--service-node",
                "sidecar~10.0.{n}.5",
            ],
        )
    },
    Kind {
        user: "redis",
        weight: 10,
        threads: (4, 6),
        rss_mib: (10.0, 400.0),
        cpu: 0.02,
        active: 0.9,
        io: 20_000.0,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "redis-server",
            "/usr/bin/redis-server",
            &["/usr/bin/redis-server *:6379"],
        )
    },
    Kind {
        user: "mysql",
        weight: 3,
        threads: (30, 60),
        rss_mib: (300.0, 1200.0),
        cpu: 0.05,
        active: 1.0,
        io: 2_000_000.0,
        fds: (40, 120),
        parent: Parent::Kind("containerd-shim"),
        ..kind("mysqld", "/usr/sbin/mysqld", &["/usr/sbin/mysqld"])
    },
    Kind {
        user: "memcache",
        weight: 5,
        threads: (10, 10),
        rss_mib: (10.0, 200.0),
        cpu: 0.01,
        active: 0.8,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "memcached",
            "/usr/bin/memcached",
            &[
                "/usr/bin/memcached",
                "-m",
                "64",
                "-p",
                "11211",
                "-u",
                "memcache",
            ],
        )
    },
    Kind {
        user: "app",
        weight: 10,
        threads: (10, 25),
        rss_mib: (150.0, 400.0),
        cpu: 0.03,
        active: 0.7,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "ruby",
            "/usr/local/bin/ruby",
            &["sidekiq 7.2.0 app [0 of 10 busy]"],
        )
    },
    Kind {
        user: "app",
        weight: 15,
        threads: (1, 3),
        rss_mib: (40.0, 150.0),
        cpu: 0.02,
        active: 0.5,
        parent: Parent::Master,
        ..kind(
            "celery",
            "/usr/bin/python3.11",
            &[
                "/usr/bin/python3",
                "/usr/local/bin/celery",
                "-A",
                "app",
                "worker",
                "--loglevel=INFO",
                "-n",
                "worker{n}@node-1",
            ],
        )
    },
    Kind {
        weight: 2,
        threads: (10, 14),
        rss_mib: (15.0, 40.0),
        cpu: 0.005,
        active: 0.9,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "coredns",
            "/coredns",
            &["/coredns", "-conf", "/etc/coredns/Corefile"],
        )
    },
    Kind {
        user: "app",
        weight: 15,
        rss_mib: (1.0, 5.0),
        active: 0.05,
        parent: Parent::Kind("sshd"),
        ..kind("bash", "/usr/bin/bash", &["-bash"])
    },
    // Short-lived tools: gone within a tick or two, replaced by others.
    Kind {
        weight: 20,
        rss_mib: (0.5, 1.5),
        active: 1.0,
        short: true,
        parent: Parent::Kind("bash"),
        ..kind(
            "sh",
            "/usr/bin/dash",
            &["/bin/sh", "-c", "/usr/local/bin/healthcheck --id {n}"],
        )
    },
    Kind {
        weight: 10,
        rss_mib: (0.5, 1.0),
        active: 0.2,
        short: true,
        parent: Parent::Kind("sh"),
        ..kind("sleep", "/usr/bin/sleep", &["sleep", "5"])
    },
    Kind {
        weight: 8,
        rss_mib: (4.0, 10.0),
        cpu: 0.01,
        active: 1.0,
        short: true,
        parent: Parent::Kind("sh"),
        ..kind(
            "curl",
            "/usr/bin/curl",
            &["curl", "-sf", "http://127.0.0.1:8080/healthz"],
        )
    },
    Kind {
        weight: 5,
        rss_mib: (1.0, 3.0),
        cpu: 0.02,
        active: 1.0,
        short: true,
        parent: Parent::Kind("sh"),
        ..kind(
            "grep",
            "/usr/bin/grep",
            &["grep", "-c", "ERROR", "/var/log/app/{n}.log"],
        )
    },
    Kind {
        weight: 3,
        rss_mib: (2.0, 5.0),
        cpu: 0.05,
        active: 1.0,
        short: true,
        parent: Parent::Kind("bash"),
        ..kind("ps", "/usr/bin/ps", &["ps", "aux"])
    },
    Kind {
        weight: 2,
        threads: (5, 8),
        rss_mib: (5.0, 12.0),
        cpu: 0.02,
        active: 1.0,
        short: true,
        parent: Parent::Kind("containerd-shim"),
        ..kind(
            "runc",
            "/usr/bin/runc",
            &[
                "runc",
                "--root",
                "/run/containerd/runc/k8s.io",
                "exec",
                "--process",
                "/tmp/runc-process{n}",
            ],
        )
    },
];

/// Users of the synthetic `/etc/passwd`: (name, uid).
pub static USERS: &[(&str, u32)] = &[
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("www-data", 33),
    ("messagebus", 100),
    ("syslog", 101),
    ("_chrony", 104),
    ("postgres", 112),
    ("mysql", 113),
    ("redis", 114),
    ("memcache", 115),
    ("app", 1000),
    ("deploy", 1001),
    ("nobody", 65534),
];

/// The uid of `user` (root for a name not in [`USERS`]).
pub fn uid_of(user: &str) -> u32 {
    USERS
        .iter()
        .find(|(n, _)| *n == user)
        .map_or(0, |&(_, uid)| uid)
}

/// Kernel thread names, `{c}` the CPU and `{n}` a worker number.
pub static KERNEL_THREADS: &[&str] = &[
    "kworker/{c}:{n}",
    "kworker/{c}:{n}H-kblockd",
    "kworker/u{n}:{c}-events_unbound",
    "ksoftirqd/{c}",
    "migration/{c}",
    "cpuhp/{c}",
    "rcu_preempt",
    "kcompactd0",
    "khugepaged",
    "kswapd0",
    "jbd2/vda-8",
    "ext4-rsv-conver",
    "kauditd",
    "oom_reaper",
];

/// Running totals of the weights (0 for one-per-host kinds), for
/// [`super::rng::Rng::weighted`].
pub fn cumulative_weights() -> Vec<u64> {
    let mut total = 0u64;
    KINDS
        .iter()
        .map(|k| {
            total += u64::from(k.weight);
            total
        })
        .collect()
}

/// The index of the kind whose comm is `comm`.
pub fn index_of(comm: &str) -> Option<usize> {
    KINDS.iter().position(|k| k.comm == comm)
}

/// `template` with `{n}` replaced by `n` and `{c}` by `c`.
pub fn expand(template: &str, n: u64, c: u64, out: &mut Vec<u8>) {
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let tail = &rest[at..];
        if let Some(t) = tail.strip_prefix("{n}") {
            out.extend_from_slice(n.to_string().as_bytes());
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{c}") {
            out.extend_from_slice(c.to_string().as_bytes());
            rest = t;
        } else {
            out.push(b'{');
            rest = &tail[1..];
        }
    }
    out.extend_from_slice(rest.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        assert_eq!(KINDS[0].comm, "systemd", "PID 1 comes first");
        let first_weighted = KINDS.iter().position(|k| k.weight > 0).expect("weighted");
        assert!(
            KINDS[first_weighted..].iter().all(|k| k.weight > 0),
            "one-per-host kinds come first"
        );
        for k in KINDS {
            assert!(!k.args.is_empty(), "{}", k.comm);
            assert!(k.exe.starts_with('/'), "{}", k.comm);
            assert!(k.threads.0 >= 1 && k.threads.0 <= k.threads.1, "{}", k.comm);
            assert!(
                k.rss_mib.0 > 0.0 && k.rss_mib.0 <= k.rss_mib.1,
                "{}",
                k.comm
            );
            assert!(k.fds.0 <= k.fds.1, "{}", k.comm);
            assert!(
                USERS.iter().any(|(n, _)| *n == k.user),
                "{} runs as unknown user {}",
                k.comm,
                k.user
            );
            if let Parent::Kind(p) = k.parent {
                assert!(index_of(p).is_some(), "{} has unknown parent {p}", k.comm);
            }
        }
        let c = cumulative_weights();
        assert_eq!(c.len(), KINDS.len());
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn templates_expand() {
        let mut out = Vec::new();
        expand("kworker/{c}:{n}H {x}", 7, 1, &mut out);
        assert_eq!(out, b"kworker/1:7H {x}");
    }
}
