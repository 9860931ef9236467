//! The `file` exporter's config.

use std::path::PathBuf;

use serde::Deserialize;

use phoenix_processors::Problem;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to; parent directories are created.
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

impl FileConfig {
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
}
