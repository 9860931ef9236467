//! Support for Phoenix's end-to-end tests: find the real binaries, run them
//! with a config, reach their HTTP endpoints, clean up.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cgroup;
pub mod fleet;
pub mod tools;
pub mod webdriver;

/// Path of a workspace binary (`phoenix-agent`), built by `cargo build`
/// before the tests run (the README's test command does that).
pub fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test-exe> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests",
        path.display()
    );
    path
}

/// The workspace root (for `configs/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// How many lines of the file at `path` contain `needle` (0 when it cannot
/// be read yet): how a test follows a file exporter's output.
pub fn lines_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The files in `dir` named `*.<extension>`, sorted by name.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

/// A fresh directory under the temp directory's real path (the file
/// exporter refuses a symbolic link anywhere in a path, and the temp
/// directory may be reached through one). The caller removes it; see
/// [`TempDir`] for one removed on drop.
pub fn scratch_dir(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let base = std::env::temp_dir()
        .canonicalize()
        .unwrap_or_else(|_| std::env::temp_dir());
    let path = base.join(format!("phoenix-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&path).expect("create temp dir");
    path
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        TempDir(scratch_dir(label))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running binary, killed on drop so a failing test leaves nothing behind.
pub struct Running {
    pub child: Child,
}

impl Running {
    /// Start `binary` with `args`, stdout and stderr captured.
    pub fn start(binary: &Path, args: &[&str]) -> Running {
        Self::start_with_env(binary, args, &[])
    }

    /// [`Running::start`] with extra environment variables.
    pub fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Running { child }
    }

    /// [`Running::start_with_env`] with stderr written to `log` (nothing
    /// captured): for a long-running process that logs much, whose pipe
    /// would fill up and block it.
    pub fn start_logging_to(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Running {
        let stderr = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Running { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit; the captured output.
    pub fn stop(self, timeout: Duration) -> Output {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// Wait up to `timeout` for the process to exit on its own (killed
    /// after that, so a hang fails the test instead of stalling the suite);
    /// the captured output.
    pub fn wait_exit(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    break;
                }
            }
        }
        let child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("spawn true"),
        );
        child.wait_with_output().expect("collect output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 50 ms until it yields a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET: (status, body), or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, "")
}

/// A plain HTTP/1.1 request with a text body: (status, body).
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    http_request_with(port, method, path, "", body)
}

/// [`http_request`] with extra header lines (each ending in `\r\n`) and a
/// body of any bytes (a protobuf message); the answer is read as text.
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: impl AsRef<[u8]>,
) -> Option<(u16, String)> {
    let body = body.as_ref();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `series` (name with its label set, exactly as
/// rendered, e.g. `x_total{exporter="file"}`) in a Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Processes named `name` (copies of `sleep`), killed on drop.
pub struct Named(Vec<Child>);

impl Named {
    /// `n` processes whose executable is named `name` (a copy of `sleep`
    /// in `dir`), for tests that need processes of chosen names.
    pub fn spawn(dir: &Path, name: &str, n: usize) -> Named {
        Named::copy_of("sleep", dir, name, n)
    }

    /// One process named `name` that burns a core (a copy of `yes`, its
    /// output thrown away): the host's busiest process while it runs.
    pub fn busy(dir: &Path, name: &str) -> Named {
        Named::copy_of("yes", dir, name, 1)
    }

    /// `n` processes of a copy of the coreutils `program` named `name`,
    /// each given the argument `600`.
    fn copy_of(program: &str, dir: &Path, name: &str, n: usize) -> Named {
        let source = ["/usr/bin", "/bin"]
            .into_iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{program} is installed"));
        let exe = dir.join(name);
        std::fs::copy(source, &exe).unwrap();
        Named((0..n).map(|_| spawn_fresh(&exe)).collect())
    }
}

/// Start a just-written executable. Another test thread forking while the
/// copy's write descriptor was open leaves that descriptor in its child
/// for a moment, and exec then fails with ETXTBSY: try again shortly.
fn spawn_fresh(exe: &Path) -> Child {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(exe)
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("cannot start {}: {e}", exe.display()),
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
