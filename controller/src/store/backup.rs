//! Consistent snapshots of the store while the controller runs
//! (`phoenix-controller backup`).
//!
//! SQLite's `VACUUM INTO` copies the database as one read transaction: the
//! copy is the state of the last commit before it started, whatever the
//! controller writes meanwhile (WAL readers never block the writer, nor the
//! writer them). A file copy of `controller.db` would not be: the WAL holds
//! commits the main file does not have yet. The snapshot is written next to
//! its destination, checked (`PRAGMA integrity_check`) and renamed into
//! place, so a file named like a backup is always a whole one.
//!
//! Backing up a data directory opens it read-only and never migrates it: a
//! newer `phoenix-controller backup` pointed at an older controller's store
//! leaves it as it is.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::Store;

/// The store's file in its data directory.
pub const DB_FILE: &str = "controller.db";

/// Snapshots written into a directory are named `controller-<UTC time>.db`;
/// the time sorts lexically, so the newest is the last name.
const PREFIX: &str = "controller-";
const SUFFIX: &str = ".db";

/// Why a backup failed; nothing was written at the destination.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no store at {0} (is --data-dir right?)")]
    NoStore(String),
    #[error("{0} already exists; a backup never overwrites a file")]
    Exists(String),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the snapshot failed its integrity check: {0}")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    /// The snapshot.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The schema version it holds (restore it with a controller at least
    /// this new).
    pub schema_version: i64,
    /// Older snapshots removed by `keep`.
    pub pruned: Vec<PathBuf>,
}

impl Store {
    /// Write a consistent snapshot of this store to `dest`, which must not
    /// exist, while the store stays in use.
    pub fn backup_to(&self, dest: &Path) -> Result<Backup, BackupError> {
        snapshot(&self.conn(), dest)
    }
}

/// Snapshot the store in `data_dir` (of a running controller or a stopped
/// one) to `output`: a file path, or a directory (existing, or written with a
/// final `/`) where the snapshot is named `controller-<UTC time>.db` and, when `keep` is above
/// zero, only the newest `keep` snapshots are kept.
pub fn backup_data_dir(data_dir: &Path, output: &Path, keep: usize) -> Result<Backup, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoStore(db.display().to_string()));
    }
    let conn = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // `backups/` names a directory, created if missing.
    let into_dir = output.is_dir() || output.to_string_lossy().ends_with('/');
    if into_dir {
        std::fs::create_dir_all(output).map_err(io(output))?;
    }
    let dest = if into_dir {
        output.join(snapshot_name(crate::now_ms()))
    } else {
        output.to_path_buf()
    };
    let mut backup = snapshot(&conn, &dest)?;
    if into_dir && keep > 0 {
        backup.pruned = prune(output, keep)?;
    }
    Ok(backup)
}

/// `controller-20261125T184005.120Z.db` for that time.
fn snapshot_name(now_ms: i64) -> String {
    let stamp: String = crate::rfc3339_ms(now_ms)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{PREFIX}{stamp}{SUFFIX}")
}

fn snapshot(conn: &Connection, dest: &Path) -> Result<Backup, BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists(dest.display().to_string()));
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A leftover of an interrupted run: VACUUM INTO refuses existing files.
    let _ = std::fs::remove_file(&partial);
    let written = (|| {
        let target = partial.to_str().ok_or_else(|| BackupError::Io {
            path: partial.display().to_string(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not UTF-8"),
        })?;
        conn.execute("VACUUM INTO ?1", [target])?;
        let schema_version = verify(&partial)?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io(&partial))?;
        std::fs::rename(&partial, dest).map_err(io(dest))?;
        Ok(schema_version)
    })();
    let schema_version = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename is durable once the directory is synced.
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(Backup {
        path: dest.to_path_buf(),
        bytes,
        schema_version,
        pruned: Vec::new(),
    })
}

/// Check a fresh snapshot; its schema version.
fn verify(path: &Path) -> Result<i64, BackupError> {
    let copy = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(BackupError::Corrupt(check));
    }
    Ok(copy.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

/// Remove all but the newest `keep` snapshots in `dir` (only files named
/// like the ones [`backup_data_dir`] writes).
fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for old in snapshots.into_iter().take(excess) {
        std::fs::remove_file(&old).map_err(io(&old))?;
        pruned.push(old);
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "phoenix-backup-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn add_config(store: &Store, hash: &str) {
        store
            .conn()
            .execute(
                "INSERT INTO config_versions (hash, content, author, created_at) VALUES (?1, 'x', 't', 1)",
                [hash],
            )
            .unwrap();
    }

    fn configs(db: &Path) -> Vec<String> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut stmt = conn
            .prepare("SELECT hash FROM config_versions ORDER BY hash")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_snapshot_of_a_live_store_holds_every_commit_and_nothing_uncommitted() {
        let tmp = Dir::new("live");
        let data = tmp.0.join("data");
        let store = Store::open_dir(&data).unwrap();
        add_config(&store, "a");
        add_config(&store, "b");
        // A transaction in progress on the controller's connection while the
        // backup runs from another: the snapshot is the last commit.
        let mut conn = store.conn();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO config_versions (hash, content, author, created_at) VALUES ('c', 'x', 't', 1)",
            [],
        )
        .unwrap();
        let out = tmp.0.join("backups");
        std::fs::create_dir_all(&out).unwrap();
        let backup = backup_data_dir(&data, &out, 0).unwrap();
        tx.commit().unwrap();
        drop(conn);

        let name = backup.path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("controller-2") && name.ends_with("Z.db"),
            "{name}"
        );
        assert_eq!(backup.schema_version, super::super::SCHEMA_VERSION);
        assert_eq!(backup.bytes, std::fs::metadata(&backup.path).unwrap().len());
        assert_eq!(configs(&backup.path), ["a", "b"]);
        assert_eq!(configs(&data.join(DB_FILE)), ["a", "b", "c"]);
        assert!(
            !backup.path.with_extension("db.partial").exists(),
            "no partial file left behind"
        );

        // Restoring is opening the copy as a data directory's store.
        let restored = tmp.0.join("restored");
        std::fs::create_dir_all(&restored).unwrap();
        std::fs::copy(&backup.path, restored.join(DB_FILE)).unwrap();
        let reopened = Store::open_dir(&restored).unwrap();
        assert_eq!(reopened.schema_version().unwrap(), backup.schema_version);
        assert_eq!(configs(&restored.join(DB_FILE)), ["a", "b"]);
    }

    #[test]
    fn a_stopped_store_is_backed_up_read_only_and_never_overwritten() {
        let tmp = Dir::new("stopped");
        let data = tmp.0.join("data");
        {
            let store = Store::open_dir(&data).unwrap();
            add_config(&store, "a");
            // Through the store's own connection too.
            let own = store.backup_to(&tmp.0.join("own.db")).unwrap();
            assert_eq!(configs(&own.path), ["a"]);
        }
        let before = std::fs::read(data.join(DB_FILE)).unwrap();
        let file = tmp.0.join("nested/copy.db");
        let backup = backup_data_dir(&data, &file, 3).unwrap();
        assert_eq!(backup.path, file);
        assert!(backup.pruned.is_empty(), "keep applies to directories only");
        assert_eq!(configs(&file), ["a"]);
        assert_eq!(
            std::fs::read(data.join(DB_FILE)).unwrap(),
            before,
            "the store is not written"
        );
        assert!(matches!(
            backup_data_dir(&data, &file, 0),
            Err(BackupError::Exists(_))
        ));
        assert!(matches!(
            backup_data_dir(&tmp.0.join("nowhere"), &tmp.0.join("x.db"), 0),
            Err(BackupError::NoStore(_))
        ));
    }

    #[test]
    fn keep_removes_the_oldest_snapshots_only() {
        let tmp = Dir::new("keep");
        let data = tmp.0.join("data");
        drop(Store::open_dir(&data).unwrap());
        let out = tmp.0.join("out");
        std::fs::create_dir_all(&out).unwrap();
        for name in [
            snapshot_name(1_000),
            snapshot_name(2_000),
            "notes.txt".to_string(),
        ] {
            std::fs::write(out.join(name), b"old").unwrap();
        }
        let backup = backup_data_dir(&data, &out, 2).unwrap();
        assert_eq!(backup.pruned, [out.join(snapshot_name(1_000))]);
        let mut left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&snapshot_name(2_000)));
        assert!(left.contains(&"notes.txt".to_string()));
        assert_eq!(snapshot_name(1_000), "controller-19700101T000001.000Z.db");

        // A final `/` names a directory to create.
        let fresh = tmp.0.join("fresh");
        let backup =
            backup_data_dir(&data, Path::new(&format!("{}/", fresh.display())), 1).unwrap();
        assert_eq!(backup.path.parent(), Some(fresh.as_path()));
    }
}
