//! The procfs receiver against the floor (see `phoenix_benches::floor`).
//!
//! With N idle `sleep` processes running (N = 200 and 1000), criterion
//! measures one full pass of each over the real `/proc`, in the same run and
//! with throughput in processes, so its report reads as time per process.
//! The receiver runs with the default configuration and a warm identity
//! cache: the steady state of an agent scraping every interval.
//!
//! The floor cannot tell a kernel thread from a process without parsing, so
//! it reads `io` of kernel threads too, which the default receiver skips;
//! `receiver_with_kthreads` (include_kernel_threads: true) reads exactly the
//! floor's files and is the like-for-like comparison.
//!
//! After criterion, a short interleaved measurement prints the per-process
//! figures and the receiver/floor ratios directly (the project's target is
//! at most 1.5x).
//!
//! Container attribution (issue 17) is measured on a synthetic `/proc` of
//! 2,000 processes (`phoenix-sim synth`'s generator, on tmpfs), where about
//! half of the processes are in containers of every runtime shape: the floor,
//! the receiver with every container attribute off, and with the defaults
//! (`container.id`, `container.runtime.name`, `k8s.pod.uid` on), warm (a
//! scrape of every interval: the cgroup file is not read again) and cold (a
//! receiver's first scrape, which reads each process's identity files,
//! `cgroup` included: what a new process costs once in its life).
//!
//! The optional metrics (issue 18) are measured on 1,000 real sleepers: the
//! floor, the defaults, every metric on but the `smaps_rollup` ones (PSS,
//! USS, swap), and every metric on, so that the cost of `smaps_rollup` shows
//! on its own.
//!
//! Run: cargo bench -p phoenix-benches --bench scrape -- --warm-up-time 1 --measurement-time 5

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_benches::floor::Floor;
use phoenix_benches::sleepers::Sleepers;
use phoenix_benches::synthetic::{SynthConfig, SyntheticTree};
use phoenix_config::receiver::procfs::METRICS;
use phoenix_processors::semconv;
use phoenix_telemetry::registry::Registry;

/// Median per-process times (µs) of the floor and each receiver, from
/// `rounds` rounds that run all of them in turn, so that every reader sees
/// the same machine noise.
struct Interleaved {
    processes: usize,
    floor_us: f64,
    receivers_us: Vec<f64>,
}

fn interleaved(floor: &mut Floor, receivers: &mut [ProcfsReceiver], rounds: usize) -> Interleaved {
    let mut floor_us = Vec::with_capacity(rounds);
    let mut receivers_us = vec![Vec::with_capacity(rounds); receivers.len()];
    let mut processes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let pass = black_box(floor.pass().expect("floor pass"));
        floor_us.push(t.elapsed().as_secs_f64() * 1e6 / pass.processes as f64);
        processes = pass.processes;
        for (receiver, times) in receivers.iter_mut().zip(&mut receivers_us) {
            let t = Instant::now();
            let batch = black_box(receiver.scrape());
            times.push(t.elapsed().as_secs_f64() * 1e6 / pass.processes as f64);
            drop(batch);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Interleaved {
        processes,
        floor_us: median(floor_us),
        receivers_us: receivers_us.into_iter().map(median).collect(),
    }
}

/// The container attributes that need `PID/cgroup`.
const CONTAINER_ATTRIBUTES: [&str; 4] = [
    semconv::CONTAINER_ID,
    semconv::CONTAINER_RUNTIME_NAME,
    semconv::K8S_POD_UID,
    semconv::PROCESS_LINUX_CGROUP,
];

/// A receiver over `root` with its identity cache warm.
fn warm_receiver(config: &ProcfsConfig) -> ProcfsReceiver {
    let mut r = ProcfsReceiver::new(config, &Registry::new()).expect("receiver");
    r.scrape();
    r
}

/// Floor, attribution off and attribution on over a synthetic `/proc` of
/// 2,000 processes; returns the interleaved medians (receivers: off, on).
fn container_attribution(criterion: &mut Criterion) -> Interleaved {
    const PROCESSES: usize = 2_000;
    let dir = Path::new("/dev/shm").join(format!("phoenix-bench-scrape-{}", std::process::id()));
    let tree = SyntheticTree::create(
        &dir,
        SynthConfig {
            processes: PROCESSES,
            kernel_threads: 40,
            ..SynthConfig::default()
        },
    )
    .expect("synthetic /proc on /dev/shm");
    let on = ProcfsConfig {
        root_path: tree.root().to_path_buf(),
        ..ProcfsConfig::default()
    };
    let mut off = on.clone();
    for name in CONTAINER_ATTRIBUTES {
        off.resource_attributes
            .insert(name.into(), Toggle { enabled: false });
    }
    let mut floor = Floor::new(&tree.root().join("proc")).expect("synthetic proc");
    let mut receivers = [warm_receiver(&off), warm_receiver(&on)];
    assert!(
        receivers[1]
            .scrape()
            .resources
            .iter()
            .any(|r| r.attributes.get("container.id").is_some()),
        "the tree has containers"
    );

    let mut group = criterion.benchmark_group(format!("synthetic_{PROCESSES}_containers"));
    group.throughput(Throughput::Elements(PROCESSES as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(30);
    group.bench_function("floor", |b| b.iter(|| floor.pass().expect("floor pass")));
    for (name, receiver) in ["attribution_off", "attribution_on"]
        .into_iter()
        .zip(&mut receivers)
    {
        group.bench_function(format!("warm/{name}"), |b| b.iter(|| receiver.scrape()));
    }
    for (name, config) in [("attribution_off", &off), ("attribution_on", &on)] {
        group.bench_function(format!("cold/{name}"), |b| {
            // By reference: building and dropping the receiver are not timed.
            b.iter_batched_ref(
                || ProcfsReceiver::new(config, &Registry::new()).expect("receiver"),
                |receiver| receiver.scrape(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    let medians = interleaved(&mut floor, &mut receivers, 50);
    drop(tree);
    let _ = std::fs::remove_dir_all(&dir);
    medians
}

/// The metrics read from `smaps_rollup`.
const SMAPS_ROLLUP_METRICS: [&str; 3] = [
    semconv::PROCESS_MEMORY_PSS,
    semconv::PROCESS_MEMORY_USS,
    semconv::PROCESS_MEMORY_SWAP,
];

/// Floor, defaults, everything but `smaps_rollup`, everything, over the
/// real `/proc` with 1,000 sleepers; the interleaved medians (receivers in
/// that order).
fn optional_metrics(criterion: &mut Criterion) -> Interleaved {
    let sleepers = Sleepers::spawn(1000);
    let mut floor = Floor::new(Path::new("/proc")).expect("/proc");
    let mut all = ProcfsConfig {
        cpu_wait: Some(true),
        ..ProcfsConfig::default()
    };
    for m in METRICS {
        all.metrics.insert(m.name.into(), Toggle { enabled: true });
    }
    let mut all_but_smaps = all.clone();
    for name in SMAPS_ROLLUP_METRICS {
        all_but_smaps
            .metrics
            .insert(name.into(), Toggle { enabled: false });
    }
    let configs = [ProcfsConfig::default(), all_but_smaps, all];
    let names = ["defaults", "all_but_smaps_rollup", "all"];
    let mut receivers = configs.each_ref().map(warm_receiver);
    let processes = floor.pass().expect("floor pass").processes;

    let mut group = criterion.benchmark_group("scrape_1000_sleepers_optional_metrics");
    group.throughput(Throughput::Elements(processes as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(30);
    group.bench_function("floor", |b| b.iter(|| floor.pass().expect("floor pass")));
    for (name, receiver) in names.into_iter().zip(&mut receivers) {
        group.bench_function(name, |b| b.iter(|| receiver.scrape()));
    }
    group.finish();
    let medians = interleaved(&mut floor, &mut receivers, 50);

    // What each optional metric adds to the defaults on its own (no
    // criterion run: interleaved medians, every receiver in each round).
    let mut singles = vec![("(defaults)".to_string(), ProcfsConfig::default())];
    singles.push((
        "cpu_wait".to_string(),
        ProcfsConfig {
            cpu_wait: Some(true),
            ..ProcfsConfig::default()
        },
    ));
    for m in METRICS.iter().filter(|m| !m.enabled_by_default) {
        let mut config = ProcfsConfig::default();
        config
            .metrics
            .insert(m.name.into(), Toggle { enabled: true });
        singles.push((m.name.to_string(), config));
    }
    let mut receivers: Vec<ProcfsReceiver> =
        singles.iter().map(|(_, c)| warm_receiver(c)).collect();
    let each = interleaved(&mut floor, &mut receivers, 30);
    let base = each.receivers_us[0];
    println!(
        "\neach optional metric alone on top of the defaults, {} processes (medians of 30 interleaved passes):",
        each.processes
    );
    for ((name, _), us) in singles.iter().zip(&each.receivers_us) {
        println!("  {name:<38} {us:>6.2} µs/process ({:+.2})", us - base);
    }
    drop(sleepers);
    medians
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut summary = Vec::new();
    for n in [200, 1000] {
        let sleepers = Sleepers::spawn(n);
        let mut floor = Floor::new(Path::new("/proc")).expect("/proc");
        let with_kthreads = ProcfsConfig {
            include_kernel_threads: true,
            ..ProcfsConfig::default()
        };
        let mut receivers = [ProcfsConfig::default(), with_kthreads].map(|config| {
            let mut r = ProcfsReceiver::new(&config, &Registry::new()).expect("receiver on /proc");
            r.scrape(); // warm the identity cache
            r
        });
        let processes = floor.pass().expect("floor pass").processes;

        let mut group = criterion.benchmark_group(format!("scrape_{n}_sleepers"));
        group.throughput(Throughput::Elements(processes as u64));
        // A pass takes milliseconds: flat sampling keeps the run short.
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(30);
        group.bench_function("floor", |b| b.iter(|| floor.pass().expect("floor pass")));
        let [receiver, receiver_with_kthreads] = &mut receivers;
        group.bench_function("receiver", |b| b.iter(|| receiver.scrape()));
        group.bench_function("receiver_with_kthreads", |b| {
            b.iter(|| receiver_with_kthreads.scrape())
        });
        group.finish();

        summary.push((n, interleaved(&mut floor, &mut receivers, 50)));
        drop(sleepers);
    }
    let containers = container_attribution(&mut criterion);
    let optional = optional_metrics(&mut criterion);
    criterion.final_summary();

    println!("\nprocfs receiver vs floor (medians of 50 interleaved passes, warm cache)");
    for (n, m) in summary {
        let (default, with_kthreads) = (m.receivers_us[0], m.receivers_us[1]);
        println!(
            "  {n:>4} sleepers, {:>4} processes: floor {:.2} µs/process; receiver {default:.2} µs/process ({:.2}x); receiver with kernel threads {with_kthreads:.2} µs/process ({:.2}x)",
            m.processes,
            m.floor_us,
            default / m.floor_us,
            with_kthreads / m.floor_us
        );
    }

    let (off, on) = (containers.receivers_us[0], containers.receivers_us[1]);
    println!(
        "  synthetic /proc, {} processes, about half in containers: floor {:.2} µs/process; attribution off {off:.2} µs/process ({:.2}x); on {on:.2} µs/process ({:.2}x); on / off {:.3}x",
        containers.processes,
        containers.floor_us,
        off / containers.floor_us,
        on / containers.floor_us,
        on / off
    );

    let floor = optional.floor_us;
    let [defaults, but_smaps, all] = optional.receivers_us[..] else {
        unreachable!("three receivers")
    };
    println!(
        "  optional metrics, {} processes: floor {floor:.2} µs/process; defaults {defaults:.2} ({:.2}x); all but smaps_rollup {but_smaps:.2} ({:.2}x); all {all:.2} ({:.2}x); smaps_rollup alone adds {:.2} µs/process",
        optional.processes,
        defaults / floor,
        but_smaps / floor,
        all / floor,
        all - but_smaps
    );
}
