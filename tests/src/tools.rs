//! Tools some tests need that a fresh machine may lack (chromium,
//! promtool, `ps`, Python's prometheus-client). Such a test checks for its
//! tool first: outside CI a missing tool skips it with a line saying what to
//! install, so `cargo test --workspace` passes on a new machine; in CI (`CI`
//! set, as `.ci/run` does) it fails, so CI never passes by skipping.

use std::path::Path;

/// Report that `tool` is missing (`install`: the command that installs it).
/// Outside CI it prints a `SKIP:` line and returns: the caller then leaves
/// out what needs the tool. In CI it panics with the same words, at the
/// caller's line.
#[track_caller]
pub fn missing_tool(tool: &str, install: &str) {
    cannot_check(&format!("{tool} not found; install it with `{install}`"));
}

/// Report that what a test needs from the machine is not there (`why`
/// says what and how to get it): the same rule as [`missing_tool`], for
/// needs other than a program (root, a writable cgroup hierarchy).
#[track_caller]
pub fn cannot_check(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set: every test must run)");
    }
    eprintln!("SKIP: {why}; what needs it is not checked");
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    file.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
