//! A small W3C WebDriver client (JSON over HTTP/1.1, std only) driving
//! Debian's headless chromium through `chromedriver`, for the dashboard's
//! end-to-end test. Just what that test needs: a session, navigation,
//! elements by CSS selector, clicks, keys, scripts, screenshots and the
//! browser's console log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Running, TempDir, free_port};

/// The key W3C gives an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMEDRIVERS: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMIUMS: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium-browser",
];

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The Debian packages of the browser and its driver.
pub const INSTALL_BROWSER: &str = "apt-get install chromium chromium-driver";

/// The browser and its driver, or which of them is missing.
pub fn find_browser() -> Result<(PathBuf, PathBuf), &'static str> {
    match (first_existing(CHROMEDRIVERS), first_existing(CHROMIUMS)) {
        (Some(d), Some(b)) => Ok((d, b)),
        (None, Some(_)) => Err("chromedriver"),
        (Some(_), None) => Err("chromium"),
        (None, None) => Err("chromium and chromedriver"),
    }
}

/// A chromedriver process on a free port, killed on drop.
pub struct ChromeDriver {
    _running: Running,
    pub port: u16,
    browser: PathBuf,
}

impl ChromeDriver {
    pub fn start() -> Result<ChromeDriver, String> {
        let (driver, browser) =
            find_browser().map_err(|missing| format!("{missing} not found ({INSTALL_BROWSER})"))?;
        let port = free_port();
        let running = Running::start(&driver, &[&format!("--port={port}")]);
        let ready = crate::wait_for(Duration::from_secs(20), || {
            let (status, v) = request(port, "GET", "/status", None).ok()?;
            (status == 200 && v["value"]["ready"] == true).then_some(())
        });
        if ready.is_none() {
            return Err(format!(
                "{} did not become ready on port {port}",
                driver.display()
            ));
        }
        Ok(ChromeDriver {
            _running: running,
            port,
            browser,
        })
    }
}

/// Why a WebDriver command failed: its W3C error code and message.
#[derive(Debug)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

/// One JSON request to the driver: (status, JSON body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("chromedriver: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver answers `Connection: close` but leaves the socket open:
    // read the header, then exactly the body it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("chromedriver: {e}"))?;
        if n == 0 {
            return Err("chromedriver: closed before its header".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("chromedriver: no status")?;
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked =
        head.contains("transfer-encoding: chunked") || head.contains("transfer-encoding:chunked");
    let mut payload = raw[split + 4..].to_vec();
    loop {
        let complete = match length {
            Some(n) => payload.len() >= n,
            None if chunked => payload.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("chromedriver: {e}"))?;
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if let Some(n) = length {
        payload.truncate(n);
    } else if chunked {
        payload = dechunk(&payload);
    }
    let value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    Ok((status, value))
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A browser session (a headless chromium with a fresh profile), closed on
/// drop.
pub struct Session {
    port: u16,
    pub id: String,
    _profile: TempDir,
}

impl Session {
    /// A headless chromium with a `width`×`height` window.
    pub fn new(driver: &ChromeDriver, width: u32, height: u32) -> Result<Session, String> {
        let profile = TempDir::new("chromium-profile");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            "--force-device-scale-factor=1".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": driver.browser.to_string_lossy(),
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let (status, v) = request(driver.port, "POST", "/session", Some(&caps))?;
        let id = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session ({status}): {v}"))?
            .to_string();
        Ok(Session {
            port: driver.port,
            id,
            _profile: profile,
        })
    }

    /// A command of this session; `Err` is the driver's error.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, WebDriverError> {
        let path = format!("/session/{}{path}", self.id);
        let body = (method == "POST").then_some(&body);
        let (status, v) = request(self.port, method, &path, body).map_err(|e| WebDriverError {
            status: 0,
            error: "transport".into(),
            message: e,
        })?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(WebDriverError {
                status,
                error: v["value"]["error"].as_str().unwrap_or("unknown").into(),
                message: v["value"]["message"].as_str().unwrap_or_default().into(),
            })
        }
    }

    fn must(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.must("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element<'_>> {
        let v = self
            .call(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .ok()?;
        Some(Element {
            session: self,
            id: v[ELEMENT].as_str()?.to_string(),
            css: css.to_string(),
        })
    }

    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.call(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            Some(Element {
                session: self,
                id: e[ELEMENT].as_str()?.to_string(),
                css: css.to_string(),
            })
        })
        .collect()
    }

    /// The first element matching `css`, waiting up to 20 s for it to be
    /// there and displayed.
    pub fn wait(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.find(css)
                && e.displayed()
            {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no visible element {css:?} on {} after 20 s; the page says:\n{}",
                    self.url(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click the element matching `css`, finding it again if a live
    /// refresh replaced it between the lookup and the click.
    pub fn click_on(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let e = self.wait(css);
            match self.call("POST", &e.path("/click"), json!({})) {
                Ok(_) => return,
                Err(err) if err.error == "stale element reference" && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(err) => panic!("click on {css:?}: {err}"),
            }
        }
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Poll `script` until it returns something truthy (not null, false,
    /// 0 or ""), for up to `timeout`; that value. Panics naming `what`.
    pub fn wait_until(&self, timeout: Duration, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self
                .call(
                    "POST",
                    "/execute/sync",
                    json!({ "script": script, "args": [] }),
                )
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the page ({}) says:\n{}",
                    self.url(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The visible text of the page (for failure messages).
    pub fn page_text(&self) -> String {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] }),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.must("GET", "/screenshot", Value::Null);
        base64_decode(b64.as_str().unwrap_or_default()).expect("screenshot is base64")
    }

    pub fn save_screenshot(&self, path: &Path) {
        std::fs::write(path, self.screenshot())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// A PNG of the whole page, beyond the viewport (Chrome DevTools).
    pub fn full_page_screenshot(&self) -> Vec<u8> {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(1440.0),
            size["height"].as_f64().unwrap_or(900.0),
        );
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 },
            }),
        );
        base64_decode(shot["data"].as_str().unwrap_or_default()).expect("screenshot is base64")
    }

    /// A Chrome DevTools command (e.g. `Emulation.setEmulatedMedia`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.must(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": cmd, "params": params }),
        )
    }

    /// The browser console's entries since the last call: (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        self.call("POST", "/se/log", json!({ "type": "browser" }))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = request(self.port, "DELETE", &format!("/session/{}", self.id), None);
    }
}

/// An element of the page.
pub struct Element<'a> {
    session: &'a Session,
    pub id: String,
    css: String,
}

impl Element<'_> {
    fn path(&self, what: &str) -> String {
        format!("/element/{}{what}", self.id)
    }

    fn must(&self, method: &str, what: &str, body: Value) -> Value {
        self.session
            .call(method, &self.path(what), body)
            .unwrap_or_else(|e| panic!("{method} {what} on {:?}: {e}", self.css))
    }

    pub fn click(&self) {
        self.must("POST", "/click", json!({}));
    }

    /// Type `text` (a `\n` is Enter).
    pub fn send_keys(&self, text: &str) {
        self.must("POST", "/value", json!({ "text": text }));
    }

    pub fn clear(&self) {
        self.must("POST", "/clear", json!({}));
    }

    /// Clear, then type.
    pub fn fill(&self, text: &str) {
        self.clear();
        self.send_keys(text);
    }

    pub fn text(&self) -> String {
        self.must("GET", "/text", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn property(&self, name: &str) -> Value {
        self.must("GET", &format!("/property/{name}"), Value::Null)
    }

    /// Laid out and not hidden (what a user could see, scrolled to).
    pub fn displayed(&self) -> bool {
        self.session
            .call(
                "POST",
                "/execute/sync",
                json!({
                    "script": "let e = arguments[0]; if (e.tagName === 'OPTION') e = e.closest('select') || e; return !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length) && getComputedStyle(e).visibility !== 'hidden';",
                    "args": [{ ELEMENT: self.id }],
                }),
            )
            .map(|v| v == true)
            .unwrap_or(false)
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a*==").is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
