//! The file exporter under a hostile config: the agent runs as root and a
//! controller can push any path, so links, kernel interfaces and files the
//! exporter did not write are refused when the exporter is built (which
//! refuses the whole config), and nothing outside the exporter's own files
//! is written, moved or deleted.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use phoenix_agent::exporter::{BuildContext, build};
use phoenix_config::exporter::{ExporterConfig, FileConfig, RotationConfig};
use phoenix_processors::model::{Attributes, Batch, KeyValue, Value};
use phoenix_telemetry::registry::Registry;

/// What an earlier run of the exporter left: one short OTLP/JSON line.
const OUR_LINE: &[u8] = b"{\"resourceMetrics\":[]}\n";
const FOREIGN: &[u8] = b"#!/bin/sh\necho owned\n";

use phoenix_tests::scratch_dir as temp_dir;

fn config(path: &Path, rotation: Option<(u64, u32)>) -> ExporterConfig {
    ExporterConfig::File(FileConfig {
        path: path.to_path_buf(),
        rotation: rotation.map(|(max_megabytes, max_backups)| RotationConfig {
            max_megabytes,
            max_backups,
        }),
    })
}

fn ctx() -> BuildContext {
    BuildContext {
        id: "file/pushed".into(),
        registry: Registry::new(),
    }
}

/// The whole error chain, as the agent reports a refused config.
fn build_error(config: &ExporterConfig) -> String {
    match build(config, &ctx()) {
        Ok(_) => panic!("{config:?} was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

fn batch(time_unix_nano: u64) -> Arc<Batch> {
    Arc::new(Batch {
        time_unix_nano,
        common_attributes: Attributes::new(vec![KeyValue::new(
            "phoenix.pipeline".into(),
            Value::Str("metrics".into()),
        )]),
        resources: vec![],
    })
}

/// Write `bytes` to a new file with the mode the exporter gives its own.
fn write_new(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("writes the fixture");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn backup(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Just over 1 MiB of our lines: the next batch rotates at `max_megabytes: 1`.
fn over_a_megabyte() -> Vec<u8> {
    OUR_LINE.repeat((1 << 20) / OUR_LINE.len() + 1)
}

#[test]
fn a_symbolic_link_as_the_file_is_refused_and_its_target_untouched() {
    let dir = temp_dir("link-file");
    let target = dir.join("profile.sh");
    write_new(&target, FOREIGN);
    let link = dir.join("metrics.jsonl");
    symlink(&target, &link).expect("symlink");
    let err = build_error(&config(&link, Some((1, 0))));
    assert!(
        err.contains(&format!(
            "path: a symbolic link in the path ({}) is refused",
            link.display()
        )),
        "{err}"
    );
    assert_eq!(read(&target), FOREIGN);

    // A dangling link would otherwise create its target.
    let absent = dir.join("created-through-the-link.sh");
    let dangling = dir.join("dangling.jsonl");
    symlink(&absent, &dangling).expect("symlink");
    let err = build_error(&config(&dangling, None));
    assert!(err.contains("symbolic link in the path"), "{err}");
    assert!(!absent.exists(), "nothing created through the link");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_symbolic_link_as_a_directory_in_the_path_is_refused() {
    let dir = temp_dir("link-dir");
    let real = dir.join("real");
    std::fs::create_dir(&real).expect("mkdir");
    let hop = dir.join("hop");
    symlink(&real, &hop).expect("symlink");
    let err = build_error(&config(&hop.join("sub/metrics.jsonl"), None));
    assert!(
        err.contains(&format!(
            "path: a symbolic link in the path ({}) is refused",
            hop.display()
        )),
        "{err}"
    );
    assert!(
        !real.join("sub").exists(),
        "no directory created through the link"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn kernel_directories_are_refused_by_validation_and_by_the_build() {
    let dir = temp_dir("kernel");
    let inside = dir.join("metrics.jsonl");
    let climb = format!(
        "{}/{}proc/self/root{}",
        dir.display(),
        "../".repeat(dir.components().count() + 2),
        inside.display()
    );
    for (path, rule) in [
        (
            format!("/proc/self/root{}", inside.display()),
            "path: must not be under /proc",
        ),
        (climb, "path: must not be under /proc"),
        (
            "/proc/1/root/etc/profile.d/x.sh".into(),
            "path: must not be under /proc",
        ),
        (
            "/sys/fs/cgroup/x.jsonl".into(),
            "path: must not be under /sys",
        ),
        ("/dev/shm/x.jsonl".into(), "path: must not be under /dev"),
        ("/dev/full".into(), "path: must not be under /dev"),
    ] {
        let config = config(Path::new(&path), Some((1, 0)));
        let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems, [rule], "{path}");
        let err = build_error(&config);
        assert!(err.contains(rule), "{path}: {err}");
    }
    assert!(!inside.exists(), "nothing written through /proc");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_foreign_file_is_refused_and_left_byte_identical() {
    let dir = temp_dir("foreign");
    let path = dir.join("metrics.jsonl");
    write_new(&path, FOREIGN);
    for rotation in [Some((1, 0)), Some((1, 3)), None] {
        let err = build_error(&config(&path, rotation));
        assert!(
            err.contains(&format!(
                "path: {} was not written by the file exporter",
                path.display()
            )),
            "{err}"
        );
    }
    assert_eq!(read(&path), FOREIGN);
    assert!(!backup(&path, 1).exists(), "not rotated");

    // An empty file is only taken for one the exporter created (mode 0600).
    let empty = dir.join("empty.jsonl");
    write_new(&empty, b"");
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = build_error(&config(&empty, None));
    assert!(
        err.contains("was not written by the file exporter"),
        "{err}"
    );
    assert_eq!(read(&empty), b"");

    // A file of ours in every other way, but another user's. Only root can
    // give a file away.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = dir.join("theirs.jsonl");
        write_new(&theirs, OUR_LINE);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        let err = build_error(&config(&theirs, Some((1, 0))));
        assert!(err.contains("belongs to another user"), "{err}");
        assert_eq!(read(&theirs), OUR_LINE);
    } else {
        eprintln!("SKIP: giving a file to another user needs root");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_foreign_backup_is_never_replaced() {
    let dir = temp_dir("foreign-backup");
    let path = dir.join("metrics.jsonl");
    let ours = over_a_megabyte();
    write_new(&path, &ours);
    write_new(&backup(&path, 2), FOREIGN);
    let err = build_error(&config(&path, Some((1, 2))));
    assert!(
        err.contains(&format!(
            "rotation: {} was not written by the file exporter",
            backup(&path, 2).display()
        )),
        "{err}"
    );
    assert_eq!(read(&backup(&path, 2)), FOREIGN);
    assert_eq!(read(&path), ours);
    assert!(!backup(&path, 1).exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn our_file_is_appended_to_and_rotated_across_a_restart() {
    let dir = temp_dir("restart");
    // How long one batch's line is (every batch here has the same length).
    let probe = dir.join("probe.jsonl");
    let exporter = build(&config(&probe, None), &ctx()).expect("builds");
    exporter.submit(batch(1));
    exporter.shutdown(Duration::from_secs(10)).await;
    let line = read(&probe).len();
    assert!(line > 0);

    // An earlier run's backup, and a current file one and a half lines
    // short of the 1 MiB limit.
    let path = dir.join("metrics.jsonl");
    let old_backup = over_a_megabyte();
    write_new(&backup(&path, 1), &old_backup);
    write_new(&path, &over_a_megabyte()[..(1 << 20) - line - line / 2]);

    // A first run appends one line (still under the limit)...
    let first = build(&config(&path, Some((1, 2))), &ctx()).expect("adopts our file");
    first.submit(batch(2));
    assert_eq!(first.shutdown(Duration::from_secs(10)).await.dropped, 0);
    let before_restart = read(&path);
    assert_eq!(before_restart.len(), (1 << 20) - line / 2);

    // ... and after a restart, the next line rotates it.
    let second = build(&config(&path, Some((1, 2))), &ctx()).expect("adopts our file");
    second.submit(batch(3));
    second.submit(batch(4));
    assert_eq!(second.shutdown(Duration::from_secs(10)).await.dropped, 0);
    assert_eq!(read(&backup(&path, 2)), old_backup);
    assert_eq!(read(&backup(&path, 1)), before_restart);
    let fresh = read(&path);
    assert_eq!(fresh.len(), 2 * line, "the two batches after rotating");
    assert!(fresh.starts_with(b"{\"resourceMetrics\":"));
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "created owner-only");
    assert!(!backup(&path, 3).exists(), "two backups kept");
    let _ = std::fs::remove_dir_all(dir);
}
