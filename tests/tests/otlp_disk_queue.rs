//! The OTLP exporter's disk queue with the real `phoenix-agent`: batches
//! written during a backend outage survive a SIGKILL and arrive exactly
//! once, in order, when the backend is back; damaged queue files are
//! skipped and counted, never sent; past `max_megabytes` the oldest batches
//! are dropped and counted, and the newest arrive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use phoenix_benches::synthetic::{SynthConfig, SyntheticTree};
use phoenix_tests::{Running, TempDir, binary, free_port, http_get, sample, wait_for};

/// The scrape timestamp of every request received, in arrival order.
type Received = Arc<Mutex<Vec<u64>>>;

/// An OTLP/HTTP (JSON) receiver on `port`: decodes every body as an
/// `ExportMetricsServiceRequest` and answers 200 with an empty response.
fn start_backend(port: u16) -> Received {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the backend port");
    let received = Received::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || serve(conn, &sink));
        }
    });
    received
}

/// Requests on one keep-alive connection until the client closes it.
fn serve(conn: TcpStream, sink: &Received) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone the stream"));
    let mut conn = conn;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a content length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        let request: ExportMetricsServiceRequest =
            serde_json::from_slice(&body).expect("an OTLP/JSON request");
        sink.lock().unwrap().push(scrape_time(&request));
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        );
    }
}

/// A batch's scrape time: the first data point's timestamp (one scrape
/// per batch, so it names the batch).
fn scrape_time(request: &ExportMetricsServiceRequest) -> u64 {
    let json = serde_json::to_value(request).unwrap();
    fn first(v: &serde_json::Value) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get("timeUnixNano")
                .and_then(|t| t.as_str()?.parse().ok())
                .or_else(|| m.values().find_map(first)),
            serde_json::Value::Array(a) => a.iter().find_map(first),
            _ => None,
        }
    }
    first(&json).expect("a data point with a timestamp")
}

fn config(queue: &Path, endpoint: u16, telemetry: u16) -> String {
    format!(
        "receivers:
  procfs: {{ collection_interval: 1s }}
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{endpoint}
    encoding: json
    compression: none
    timeout: 1s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s }}
    sending_queue:
      queue_size: 2
      storage: {{ directory: {queue}, max_megabytes: 16 }}
service:
  pipelines:
    metrics/a: {{ receivers: [procfs], exporters: [otlp_http] }}
  telemetry: {{ address: 127.0.0.1:{telemetry} }}
",
        queue = queue.display()
    )
}

fn start_agent(dir: &Path, queue: &Path, endpoint: u16, telemetry: u16) -> Running {
    let path = dir.join("agent.yaml");
    std::fs::write(&path, config(queue, endpoint, telemetry)).unwrap();
    let agent = Running::start(
        &binary("phoenix-agent"),
        &["--config", path.to_str().unwrap()],
    );
    wait_for(Duration::from_secs(20), || {
        http_get(telemetry, "/readyz").filter(|(s, _)| *s == 200)
    })
    .expect("agent ready");
    agent
}

fn metric(telemetry: u16, series: &str) -> Option<f64> {
    let (_, page) = http_get(telemetry, "/metrics")?;
    sample(&page, series)
}

fn batch_files(queue: &Path) -> Vec<PathBuf> {
    phoenix_tests::files_with_extension(queue, "batch")
}

/// Run the agent against a dead endpoint until `at_least` batches are on
/// disk, then SIGKILL it; the time of the kill.
fn fill_queue_then_kill(dir: &Path, queue: &Path, endpoint: u16, at_least: usize) -> u64 {
    let telemetry = free_port();
    let agent = start_agent(dir, queue, endpoint, telemetry);
    wait_for(Duration::from_secs(30), || {
        let on_disk = metric(
            telemetry,
            "phoenix_exporter_disk_queue_batches{exporter=\"otlp_http\"}",
        )?;
        (on_disk >= at_least as f64).then_some(())
    })
    .expect("batches queued on disk during the outage");
    agent.signal(libc::SIGKILL);
    let killed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    agent.wait_exit(Duration::from_secs(5));
    killed_at
}

/// Restart against a live backend; wait until the disk queue is empty and
/// `expected_old` batches from before the kill have arrived. What arrived.
fn replay(
    dir: &Path,
    queue: &Path,
    endpoint: u16,
    killed_at: u64,
    expected_old: usize,
) -> (Vec<u64>, Running, u16) {
    let telemetry = free_port();
    let agent = start_agent(dir, queue, endpoint, telemetry);
    let received = start_backend(endpoint);
    wait_for(Duration::from_secs(30), || {
        let old = received
            .lock()
            .unwrap()
            .iter()
            .filter(|&&t| t < killed_at)
            .count();
        (old >= expected_old && batch_files(queue).is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("replayed batches arrive: {:?}", received.lock().unwrap()));
    // A little longer, so that a duplicate would have time to show.
    std::thread::sleep(Duration::from_millis(1500));
    let got = received.lock().unwrap().clone();
    (got, agent, telemetry)
}

fn assert_exactly_once_in_order(got: &[u64], killed_at: u64, expected_old: usize) {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "every batch once, oldest first: {got:?}"
    );
    let old = got.iter().filter(|&&t| t < killed_at).count();
    assert_eq!(old, expected_old, "batches from before the kill: {got:?}");
}

#[test]
fn batches_survive_an_outage_and_a_sigkill_and_arrive_exactly_once() {
    let dir = TempDir::new("disk-queue-e2e");
    let queue = dir.path().join("queue");
    let endpoint = free_port();

    let killed_at = fill_queue_then_kill(dir.path(), &queue, endpoint, 4);
    let on_disk = batch_files(&queue).len();
    assert!(on_disk >= 4, "{on_disk} batches on disk after the kill");
    let (got, agent, _) = replay(dir.path(), &queue, endpoint, killed_at, on_disk);
    assert_exactly_once_in_order(&got, killed_at, on_disk);
    drop(agent);

    // Damage the queue of a second outage while the agent is down: cut the
    // newest batch mid-record, add garbage after the oldest one's record.
    let endpoint = free_port();
    let killed_at = fill_queue_then_kill(dir.path(), &queue, endpoint, 4);
    let files = batch_files(&queue);
    let (oldest, newest) = (&files[0], &files[files.len() - 1]);
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(oldest)
        .unwrap()
        .write_all(b"\0garbage")
        .unwrap();
    let intact = files.len() - 2;
    let (got, agent, telemetry) = replay(dir.path(), &queue, endpoint, killed_at, intact);
    assert_exactly_once_in_order(&got, killed_at, intact);
    let corrupt = metric(
        telemetry,
        "phoenix_exporter_disk_queue_dropped_batches_total{exporter=\"otlp_http\",reason=\"corrupt\"}",
    );
    assert_eq!(corrupt, Some(2.0), "both damaged batches counted");
    drop(agent);
}

/// The disk exporter next to one that always reaches its backend, on one
/// pipeline (so both get every batch): what the second receives is every
/// batch the pipeline made.
fn full_disk_config(root: &Path, queue: &Path, endpoint: u16, all: u16, telemetry: u16) -> String {
    format!(
        "receivers:
  procfs: {{ collection_interval: 1s, root_path: {root} }}
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{endpoint}
    encoding: json
    compression: none
    timeout: 5s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms, max_elapsed_time: 0s }}
    sending_queue:
      queue_size: 20
      storage: {{ directory: {queue}, max_megabytes: 1 }}
  otlp_http/all:
    endpoint: http://127.0.0.1:{all}
    encoding: json
    compression: none
    timeout: 5s
    sending_queue: {{ queue_size: 100 }}
service:
  pipelines:
    metrics/a: {{ receivers: [procfs], exporters: [otlp_http, otlp_http/all] }}
  telemetry: {{ address: 127.0.0.1:{telemetry} }}
",
        root = root.display(),
        queue = queue.display()
    )
}

/// Bytes of the batch files in `queue` (a file deleted while listing
/// counts nothing).
fn bytes_on_disk(queue: &Path) -> u64 {
    batch_files(queue)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_full_disk_queue_drops_the_oldest_and_the_newest_arrive_in_order() {
    const CAP: f64 = (1u64 << 20) as f64;
    let dir = TempDir::new("disk-queue-full");
    // 200 synthetic processes: ~0.2 MB a batch on disk, so the 1 MiB cap
    // (the smallest max_megabytes) holds about five, whatever this machine
    // runs.
    let root = dir.path().join("root");
    SyntheticTree::create(
        &root,
        SynthConfig {
            processes: 200,
            ..SynthConfig::default()
        },
    )
    .expect("a synthetic /proc");
    let queue = dir.path().join("queue");
    let (endpoint, telemetry) = (free_port(), free_port());
    let all_port = free_port();
    let all = start_backend(all_port);
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        full_disk_config(&root, &queue, endpoint, all_port, telemetry),
    )
    .unwrap();
    let _agent = Running::start(
        &binary("phoenix-agent"),
        &["--config", path.to_str().unwrap()],
    );

    let series = |name: &str| format!("{name}{{exporter=\"otlp_http\"}}");
    let disk_full = "phoenix_exporter_disk_queue_dropped_batches_total\
                     {exporter=\"otlp_http\",reason=\"disk_full\"}";
    // The cap holds on every look, in the gauge and on disk.
    let within_cap = |page: &str| {
        let bytes = sample(page, &series("phoenix_exporter_disk_queue_bytes"));
        assert!(
            bytes.is_none_or(|b| b <= CAP),
            "disk queue gauge {bytes:?} over the cap"
        );
        let on_disk = bytes_on_disk(&queue);
        assert!(
            on_disk as f64 <= CAP,
            "{on_disk} bytes of batches on disk, over the cap"
        );
    };
    // The backend is down until the oldest batches have been dropped.
    wait_for(Duration::from_secs(120), || {
        let (_, page) = http_get(telemetry, "/metrics")?;
        within_cap(&page);
        (sample(&page, disk_full)? >= 3.0).then_some(())
    })
    .expect("batches dropped as disk_full during the outage");

    let got = start_backend(endpoint);
    let back_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Drained, and a batch made after the backend came back has arrived at
    // both backends (so every older one has reached the second).
    wait_for(Duration::from_secs(60), || {
        let (_, page) = http_get(telemetry, "/metrics")?;
        within_cap(&page);
        let drained = sample(&page, &series("phoenix_exporter_disk_queue_batches"))? == 0.0;
        let last = *got.lock().unwrap().last()?;
        (drained && last > back_at && all.lock().unwrap().contains(&last)).then_some(())
    })
    .unwrap_or_else(|| panic!("the queue drains: {:?}", got.lock().unwrap()));
    let dropped = metric(telemetry, disk_full).expect("the disk_full counter");
    let got = got.lock().unwrap().clone();
    let last = *got.last().unwrap();
    let made: Vec<u64> = all
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&t| t <= last)
        .collect();
    assert!(
        made.windows(2).all(|w| w[0] < w[1]),
        "one scrape per batch, each once: {made:?}"
    );

    // The batch in flight when the outage began is never evicted (its send
    // is retried until the backend answers); after it, the newest batches,
    // in order, each once. What is missing is exactly what was counted.
    let in_flight = usize::from(got[0] == made[0]);
    let newest = &got[in_flight..];
    assert_eq!(
        newest,
        &made[made.len() - newest.len()..],
        "the newest batches, in order, each once (made: {made:?})"
    );
    assert_eq!(
        (made.len() - got.len()) as f64,
        dropped,
        "every batch that did not arrive was counted as disk_full (got {got:?}, made {made:?})"
    );
    assert!(dropped >= 3.0);
}
