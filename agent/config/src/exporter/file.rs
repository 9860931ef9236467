//! The `file` exporter's config.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use phoenix_processors::Problem;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to; missing parent directories are created. No
    /// component may be a symbolic link, and nothing under [`REFUSED_DIRS`]
    /// is opened (except [`DISCARD_PATH`], which opens nothing).
    pub path: PathBuf,
    /// Size-based rotation; absent means the file grows without bound.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
}

/// Rotate `path` to `path.1` (shifting older backups to `.2`, `.3`, ...)
/// before a write would make it larger than `max_megabytes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    #[serde(default = "default_max_megabytes")]
    pub max_megabytes: u64,
    /// Rotated files kept; 0 keeps none (the file is truncated on rotation).
    /// Only files this exporter wrote are ever rotated, truncated or replaced.
    #[serde(default = "default_max_backups")]
    pub max_backups: u32,
}

fn default_max_megabytes() -> u64 {
    100
}

fn default_max_backups() -> u32 {
    10
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_megabytes: default_max_megabytes(),
            max_backups: default_max_backups(),
        }
    }
}

/// Upper bound on `max_megabytes` (1 TiB): larger is certainly a typo, and
/// it keeps the byte limit far from overflow.
const MAX_MEGABYTES_LIMIT: u64 = 1 << 20;

/// Upper bound on `max_backups`: each rotation renames every backup.
const MAX_BACKUPS_LIMIT: u32 = 1000;

/// Kernel interfaces, not storage: a file there can reconfigure the host,
/// and `/proc/<pid>/root` reaches into every other mount namespace. The
/// agent runs as root, so the file exporter never opens anything under them.
pub const REFUSED_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The one path under [`REFUSED_DIRS`] that is accepted: the exporter then
/// discards every batch without opening anything.
pub const DISCARD_PATH: &str = "/dev/null";

/// Where a file exporter writes, as it will open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileTarget {
    /// [`DISCARD_PATH`]: encode and count, write nothing.
    Discard,
    /// An absolute path with no `.` or `..` component.
    File(PathBuf),
}

impl FileConfig {
    /// Where this config writes: `path` made absolute against `cwd` (the
    /// agent's working directory, as a relative path is opened) and `..`
    /// resolved by name, which is what the kernel does too since the exporter
    /// refuses symbolic links anywhere in the path. Refused under
    /// [`REFUSED_DIRS`]; the agent checks this again when it opens the file.
    pub fn target(&self, cwd: &Path) -> Result<FileTarget, Problem> {
        let path = lexically_absolute(&self.path, cwd);
        if path == Path::new(DISCARD_PATH) {
            return Ok(FileTarget::Discard);
        }
        if let Some(dir) = REFUSED_DIRS.iter().find(|d| path.starts_with(d)) {
            return Err(Problem::new("path", format!("must not be under {dir}")));
        }
        if path.file_name().is_none() {
            return Err(Problem::sentence(
                "path",
                format!("{:?}: must name a file, not a directory", self.path),
            ));
        }
        Ok(FileTarget::File(path))
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(Problem::new("path", "must not be empty"));
        } else if self.path.file_name().is_none() {
            // `out/`, `.` or `/`: a directory, not a file to append to.
            errors.push(Problem::sentence(
                "path",
                format!("{:?}: must name a file, not a directory", self.path),
            ));
        } else {
            // A relative path is checked against this process's working
            // directory; when that is unknown only an absolute path can be
            // judged here, and the agent checks again when it opens the file.
            let cwd = std::env::current_dir().unwrap_or_default();
            if (self.path.is_absolute() || cwd.is_absolute())
                && let Err(problem) = self.target(&cwd)
            {
                errors.push(problem);
            }
        }
        if let Some(r) = &self.rotation {
            if r.max_megabytes == 0 {
                errors.push(Problem::new("rotation.max_megabytes", "must be at least 1"));
            } else if r.max_megabytes > MAX_MEGABYTES_LIMIT {
                errors.push(Problem::new(
                    "rotation.max_megabytes",
                    format!(
                        "{} is more than the limit of {MAX_MEGABYTES_LIMIT}",
                        r.max_megabytes
                    ),
                ));
            }
            if r.max_backups > MAX_BACKUPS_LIMIT {
                errors.push(Problem::new(
                    "rotation.max_backups",
                    format!(
                        "{} is more than the limit of {MAX_BACKUPS_LIMIT}",
                        r.max_backups
                    ),
                ));
            }
        }
        errors
    }
}

/// `path` joined to `cwd` when relative, without `.` components, and with
/// each `..` removing the component before it (`..` at the root stays at
/// the root, as in the kernel).
pub fn lexically_absolute(path: &Path, cwd: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in cwd.join(path).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_every_problem() {
        let c = FileConfig {
            path: PathBuf::new(),
            rotation: Some(RotationConfig {
                max_megabytes: 0,
                max_backups: 5000,
            }),
        };
        let errors = c.validate();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["path", "rotation.max_megabytes", "rotation.max_backups"]
        );
        assert_eq!(
            errors[1].to_string(),
            "rotation.max_megabytes: must be at least 1"
        );
        let dir = FileConfig {
            path: PathBuf::from("/"),
            rotation: None,
        };
        let errors = dir.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "path");
        assert_eq!(
            errors[0].to_string(),
            "path \"/\": must name a file, not a directory"
        );
        let ok = FileConfig {
            path: PathBuf::from("out/metrics.jsonl"),
            rotation: Some(RotationConfig::default()),
        };
        assert!(ok.validate().is_empty());
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_fields() {
        let c: FileConfig =
            serde_json::from_str(r#"{"path": "x.jsonl", "rotation": {}}"#).expect("parses");
        assert_eq!(c.rotation, Some(RotationConfig::default()));
        assert!(serde_json::from_str::<FileConfig>(r#"{"path": "x", "flush": 1}"#).is_err());
        assert!(
            serde_json::from_str::<FileConfig>(r#"{}"#).is_err(),
            "path is required"
        );
    }

    fn file(path: &str) -> FileConfig {
        FileConfig {
            path: PathBuf::from(path),
            rotation: None,
        }
    }

    #[test]
    fn kernel_directories_are_refused_after_resolving_dots() {
        let cwd = Path::new("/var/lib/phoenix");
        for (path, dir) in [
            ("/proc/self/root/etc/profile.d/x.sh", "/proc"),
            ("/proc/1/root/tmp/m.jsonl", "/proc"),
            ("/sys/fs/cgroup/release_agent", "/sys"),
            ("/dev/sda", "/dev"),
            ("/dev/full", "/dev"),
            ("/var/log/../../proc/self/root/x", "/proc"),
            ("/./dev//./shm/m.jsonl", "/dev"),
            ("../../../../../../proc/self/root/x", "/proc"),
            ("../../../sys/kernel/x", "/sys"),
            ("/dev/null/../sda", "/dev"),
        ] {
            let problem = file(path).target(cwd).expect_err(path);
            assert_eq!(
                problem.to_string(),
                format!("path: must not be under {dir}")
            );
        }
    }

    #[test]
    fn target_is_absolute_without_dots() {
        let cwd = Path::new("/var/lib/phoenix");
        let target = |p: &str| file(p).target(cwd).expect(p);
        assert_eq!(
            target("out/./m.jsonl"),
            FileTarget::File("/var/lib/phoenix/out/m.jsonl".into())
        );
        assert_eq!(
            target("../phoenix-out/m.jsonl"),
            FileTarget::File("/var/lib/phoenix-out/m.jsonl".into())
        );
        // Names that merely start like a refused directory are fine.
        assert_eq!(
            target("/procs/m.jsonl"),
            FileTarget::File("/procs/m.jsonl".into())
        );
        assert_eq!(target("/dev/null"), FileTarget::Discard);
        assert_eq!(target("/dev/./null"), FileTarget::Discard);
    }

    #[test]
    fn validate_refuses_kernel_directories() {
        let errors = file("/tmp/../proc/self/root/etc/profile.d/x.sh").validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].to_string(), "path: must not be under /proc");
        assert!(file("/dev/null").validate().is_empty());
        assert_eq!(file("/dev/full").validate().len(), 1);
        // Relative: resolved against this process's working directory, so
        // enough `..` reach the root from anywhere.
        let climb = format!("{}proc/self/x", "../".repeat(64));
        assert_eq!(file(&climb).validate().len(), 1);
    }
}
