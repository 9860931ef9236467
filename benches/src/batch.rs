//! A synthetic scrape shaped like the procfs receiver's output, for
//! benchmarks that must not depend on the machine's processes: shared
//! metric descriptors and point attribute sets, interned-style shared
//! strings, realistic attribute values.

use std::sync::Arc;

use phoenix_processors::model::{
    Attributes, Batch, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource, Str,
    Value,
};
use phoenix_processors::semconv;

const NAMES: [&str; 50] = [
    "systemd",
    "kthreadd",
    "kworker",
    "ksoftirqd",
    "migration",
    "rcu_sched",
    "sshd",
    "bash",
    "zsh",
    "sudo",
    "cron",
    "rsyslogd",
    "dbus-daemon",
    "nginx",
    "postgres",
    "mysqld",
    "redis-server",
    "java",
    "python3",
    "node",
    "ruby",
    "php-fpm",
    "containerd",
    "dockerd",
    "kubelet",
    "kube-proxy",
    "coredns",
    "etcd",
    "prometheus",
    "grafana",
    "otelcol",
    "envoy",
    "haproxy",
    "memcached",
    "mongod",
    "rabbitmq",
    "kafka",
    "zookeeper",
    "elasticsearch",
    "logstash",
    "fluent-bit",
    "vector",
    "chronyd",
    "udevd",
    "polkitd",
    "snapd",
    "agetty",
    "gunicorn",
    "uwsgi",
    "celery",
];
const OWNERS: [&str; 6] = ["root", "www-data", "postgres", "nobody", "app", "daemon"];

/// Deterministic pseudo-random numbers (the bench must not vary run to run).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

fn s(key: &str, value: Str) -> KeyValue {
    KeyValue::new(key.into(), Value::Str(value))
}

fn desc(name: &str, unit: &str, kind: MetricKind) -> Arc<MetricDesc> {
    Arc::new(MetricDesc {
        name: name.into(),
        description: Str::from(""),
        unit: unit.into(),
        kind,
    })
}

/// `n` processes, 9 data points each: cpu.time (user, system),
/// cpu.utilization (user, system), memory.usage, memory.virtual, disk.io
/// (read, write), thread.count. About 2% are tagged critical, the rest
/// high/medium/low, as if a `priority` processor had run.
pub fn synthetic_batch(n: usize) -> Batch {
    let now: u64 = 1_700_000_000_000_000_000;
    let cpu_time = desc(semconv::PROCESS_CPU_TIME, "s", MetricKind::COUNTER);
    let cpu_util = desc(semconv::PROCESS_CPU_UTILIZATION, "1", MetricKind::Gauge);
    let mem = desc(
        semconv::PROCESS_MEMORY_USAGE,
        "By",
        MetricKind::UP_DOWN_COUNTER,
    );
    let virt = desc(
        semconv::PROCESS_MEMORY_VIRTUAL,
        "By",
        MetricKind::UP_DOWN_COUNTER,
    );
    let io = desc(semconv::PROCESS_DISK_IO, "By", MetricKind::COUNTER);
    let threads = desc(
        semconv::PROCESS_THREAD_COUNT,
        "{thread}",
        MetricKind::UP_DOWN_COUNTER,
    );
    let one = |k: &str, v: &str| Attributes::new(vec![s(k, v.into())]);
    let user = one(semconv::CPU_MODE, semconv::CPU_MODE_USER);
    let system = one(semconv::CPU_MODE, semconv::CPU_MODE_SYSTEM);
    let read = one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_READ);
    let write = one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_WRITE);
    let empty = Attributes::empty();
    // Shared like the receiver's interner shares them.
    let names: Vec<Str> = NAMES.iter().map(|n| Str::from(*n)).collect();
    let paths: Vec<Str> = NAMES
        .iter()
        .map(|n| Str::from(format!("/usr/bin/{n}")))
        .collect();
    let owners: Vec<Str> = OWNERS.iter().map(|o| Str::from(*o)).collect();
    let priorities: Vec<Str> = ["critical", "high", "medium", "low"]
        .iter()
        .map(|p| Str::from(*p))
        .collect();

    let mut rng = 42u64;
    let resources = (0..n)
        .map(|i| {
            let name = (lcg(&mut rng) % 50) as usize;
            let pid = 1000 + i as i64;
            let age_s = lcg(&mut rng) % 864_000;
            let start = now - age_s * 1_000_000_000;
            let priority = match lcg(&mut rng) % 100 {
                0..2 => 0,
                2..10 => 1,
                10..30 => 2,
                _ => 3,
            };
            let attributes = Attributes::new(vec![
                KeyValue::new(semconv::PROCESS_PID.into(), Value::Int(pid)),
                KeyValue::new(semconv::PROCESS_PARENT_PID.into(), Value::Int(1)),
                s(
                    semconv::PROCESS_CREATION_TIME,
                    format!("2023-11-{:02}T10:00:00.000Z", 1 + i % 28).into(),
                ),
                s(semconv::PROCESS_EXECUTABLE_NAME, names[name].clone()),
                s(semconv::PROCESS_EXECUTABLE_PATH, paths[name].clone()),
                s(semconv::PROCESS_COMMAND, paths[name].clone()),
                s(
                    semconv::PROCESS_COMMAND_LINE,
                    format!(
                        "{} --config /etc/{}/main.conf --worker-id {pid:06}",
                        paths[name], NAMES[name]
                    )
                    .into(),
                ),
                s(semconv::PROCESS_OWNER, owners[i % OWNERS.len()].clone()),
                s(semconv::PHOENIX_PRIORITY, priorities[priority].clone()),
            ]);
            let mut r = |m: u64| (lcg(&mut rng) % m) as f64;
            let p = |a: &Attributes, st: u64, v: Number| Point {
                attributes: a.clone(),
                start_time_unix_nano: st,
                value: v,
            };
            let metrics = vec![
                Metric {
                    desc: cpu_time.clone(),
                    points: vec![
                        p(&user, start, Number::Double(r(100_000) / 100.0)),
                        p(&system, start, Number::Double(r(10_000) / 100.0)),
                    ]
                    .into(),
                },
                Metric {
                    desc: cpu_util.clone(),
                    points: vec![
                        p(&user, 0, Number::Double(r(1000) / 10_000.0)),
                        p(&system, 0, Number::Double(r(100) / 10_000.0)),
                    ]
                    .into(),
                },
                Metric {
                    desc: mem.clone(),
                    points: vec![p(&empty, start, Number::Int(r(1 << 31) as i64))].into(),
                },
                Metric {
                    desc: virt.clone(),
                    points: vec![p(&empty, start, Number::Int(r(1 << 34) as i64))].into(),
                },
                Metric {
                    desc: io.clone(),
                    points: vec![
                        p(&read, start, Number::Int(r(1 << 30) as i64)),
                        p(&write, start, Number::Int(r(1 << 28) as i64)),
                    ]
                    .into(),
                },
                Metric {
                    desc: threads.clone(),
                    points: vec![p(&empty, start, Number::Int(1 + r(64) as i64))].into(),
                },
            ];
            Resource {
                attributes,
                metrics,
                identity: Some((pid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ start),
            }
        })
        .collect();
    Batch {
        time_unix_nano: now,
        common_attributes: Attributes::new(vec![s(semconv::HOST_NAME, "bench-host".into())]),
        resources,
    }
}
