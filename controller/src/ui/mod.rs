//! The dashboard: a few hand-written files (HTML, one stylesheet, ES
//! modules) compiled into the binary with `include_str!`, served at `/` and
//! `/ui/<asset>`, and the live-update stream `GET /api/v1/events`.
//!
//! The assets need no token: they hold no data. Everything the page shows
//! comes from `/api/v1` with the token the user signs in with, so the
//! dashboard can do exactly what `phoenixctl` can and nothing more. Every
//! asset is sent with a strict Content-Security-Policy (scripts and styles
//! only from these files, no inline code, no other origin), `nosniff` and
//! `DENY` framing, and `no-cache` so a new controller's assets are picked up
//! at once (they are small; revalidation is cheap).
//!
//! Live updates are server-sent events: the stream subscribes to
//! [`crate::Changes`] and sends `event: change` at most every
//! [`EVENT_DEBOUNCE`], plus a keep-alive comment every [`KEEPALIVE`]. The
//! page refetches what it shows on each event. The browser reads the stream
//! with `fetch()` (an `EventSource` cannot send the `Authorization` header).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::Shared;

/// Events are sent at most this often, however fast the counter moves (a
/// fleet's agents report every interval).
pub const EVENT_DEBOUNCE: Duration = Duration::from_millis(500);
/// A comment line this often keeps proxies from closing an idle stream and
/// lets the page notice a dead connection.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Scripts and styles only from this origin's files, nothing inline, no
/// frames, no plugins; the API is fetched from the same origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("assets/", $path)),
        }
    };
}

/// Every file of the dashboard. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("icon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("access.js", JS),
    asset!("live.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("charts.js", JS),
    asset!("yaml.js", JS),
    asset!("views/signin.js", JS),
    asset!("views/fleet.js", JS),
    asset!("views/agent.js", JS),
    asset!("views/experiments.js", JS),
    asset!("views/experiment.js", JS),
    asset!("views/create.js", JS),
    asset!("views/templates.js", JS),
];

/// `/` and `/ui/<asset>`; no state, no token.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/{*path}", get(asset))
}

/// The headers every dashboard response carries.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn serve(asset: &Asset) -> Response {
    secure(
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response(),
    )
}

async fn index() -> Response {
    serve(&ASSETS[0])
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => serve(a),
        None => secure(
            (
                StatusCode::NOT_FOUND,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                "no such file\n",
            )
                .into_response(),
        ),
    }
}

/// Set on the router by [`crate::api::serve`]: the event streams end when
/// the server stops (a graceful shutdown waits for open responses).
#[derive(Clone)]
pub struct Stop(pub watch::Receiver<bool>);

/// `GET /api/v1/events`: server-sent events, `event: change` with
/// `data: {"seq": n}` when anything an API reader may show changed (at
/// most every [`EVENT_DEBOUNCE`]), `: keepalive` every [`KEEPALIVE`]. The
/// first event, `ready`, says the stream is up (a page reconnecting after a
/// controller restart refetches everything on it).
pub async fn events(
    State(shared): State<Arc<Shared>>,
    stop: Option<axum::Extension<Stop>>,
) -> Response {
    let changes = shared.changes.subscribe();
    let stop = stop.map(|s| s.0.0);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(stream_changes(changes, stop, tx));
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and friends would otherwise hold the events back.
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// Feed one client until it goes away or the server stops.
async fn stream_changes(
    mut changes: watch::Receiver<u64>,
    stop: Option<watch::Receiver<bool>>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let stopped = async move {
        match stop {
            Some(mut s) => crate::stopped(&mut s).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    let first = *changes.borrow_and_update();
    let send = |text: String| {
        let tx = tx.clone();
        async move { tx.send(Ok(Bytes::from(text))).await.is_ok() }
    };
    if !send(format!("event: ready\ndata: {{\"seq\": {first}}}\n\n")).await {
        return;
    }
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut last_sent = Instant::now() - EVENT_DEBOUNCE;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tx.closed() => return,
            _ = keepalive.tick() => {
                if !send(": keepalive\n\n".into()).await {
                    return;
                }
                continue;
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        // Debounce: whatever else changes until then is in this event.
        let due = last_sent + EVENT_DEBOUNCE;
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let seq = *changes.borrow_and_update();
        if !send(format!("event: change\ndata: {{\"seq\": {seq}}}\n\n")).await {
            return;
        }
        last_sent = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;
    use crate::{Settings, start};

    const TOKEN: &str = "ui-test-token-0123456789";

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            opamp_listen: None,
            opamp_timeout: crate::DEFAULT_OPAMP_TIMEOUT,
            data_dir: dir.to_path_buf(),
            templates_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/templates"),
            api_auth: crate::auth::AuthSource::SingleToken(Token::new(TOKEN).unwrap()),
            agent_token: Token::new("ui-test-agent-token-0123").unwrap(),
            api_read_open: false,
            tls: None,
            agent_timeout: Duration::from_secs(30),
            push_timeout: Duration::from_secs(60),
            experiment_retention: crate::DEFAULT_EXPERIMENT_RETENTION,
            audit_export: None,
            audit_retention: None,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "phoenix-ui-test-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn controller(name: &str) -> (crate::Running, String, std::path::PathBuf) {
        let dir = temp_dir(name);
        let running = start(settings(&dir)).await.expect("controller starts");
        let base = format!("http://{}", running.http_addr);
        (running, base, dir)
    }

    fn check_security_headers(r: &reqwest::Response) {
        let h = r.headers();
        assert_eq!(h["content-security-policy"], CONTENT_SECURITY_POLICY);
        let csp = CONTENT_SECURITY_POLICY;
        assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-cache");
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types_and_security_headers() {
        let (running, base, dir) = controller("assets").await;
        let client = reqwest::Client::new();
        for (path, ty, needle) in [
            ("/", "text/html; charset=utf-8", "<script type=\"module\""),
            ("/ui/index.html", "text/html; charset=utf-8", "/ui/app.js"),
            (
                "/ui/app.css",
                "text/css; charset=utf-8",
                "prefers-color-scheme",
            ),
            ("/ui/app.js", "text/javascript; charset=utf-8", "import"),
            (
                "/ui/views/experiment.js",
                "text/javascript; charset=utf-8",
                "export",
            ),
            ("/ui/icon.svg", "image/svg+xml", "<svg"),
        ] {
            // No token: the files hold no data.
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()["content-type"], ty, "{path}");
            check_security_headers(&r);
            let body = r.text().await.unwrap();
            assert!(body.contains(needle), "{path} lacks {needle:?}");
        }
        for path in [
            "/ui/nope.js",
            "/ui/../Cargo.toml",
            "/ui/views/../../lib.rs",
            "/ui/",
        ] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        // The API still needs the token.
        let r = client
            .get(format!("{base}/api/v1/agents"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        running.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_module_import_names_an_embedded_file() {
        // A typo in an import would only show in a browser: check here.
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            for line in a.body.lines() {
                let line = line.trim();
                if !(line.starts_with("import ") || line.starts_with("} from ")) {
                    continue;
                }
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let path = spec
                    .strip_prefix("/ui/")
                    .unwrap_or_else(|| panic!("{}: import {spec:?} must be /ui/…", a.path));
                assert!(
                    ASSETS.iter().any(|b| b.path == path),
                    "{}: imports {spec:?}, which is not embedded",
                    a.path
                );
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_in_the_page() {
        let html = ASSETS[0].body;
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("<style"), "inline stylesheet");
        for chunk in html.split("<script").skip(1) {
            assert!(chunk.starts_with(" type=\"module\" src=\"/ui/"), "{chunk}");
        }
        // Nothing is loaded from elsewhere (the SVG namespace is a name,
        // not a load).
        for a in ASSETS {
            let body = a.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{} refers to another origin",
                a.path
            );
        }
    }

    /// Read from an event stream until `needle` shows up (or time runs out).
    async fn read_until(r: &mut reqwest::Response, seen: &mut String, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen.contains(needle) {
            match tokio::time::timeout_at(deadline, r.chunk()).await {
                Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
                _ => return false,
            }
        }
        true
    }

    #[tokio::test]
    async fn the_event_stream_needs_the_token_and_sends_debounced_changes() {
        let (running, base, dir) = controller("events").await;
        let client = reqwest::Client::new();
        let url = format!("{base}/api/v1/events");
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = client
            .get(&url)
            .header("authorization", "Bearer wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        let mut r = client
            .get(&url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let mut seen = String::new();
        assert!(read_until(&mut r, &mut seen, "event: ready\ndata: {\"seq\": 0}\n\n").await);

        // A burst of changes arrives as one event with the latest count.
        let started = Instant::now();
        for _ in 0..5 {
            running.shared.changes.bump();
        }
        assert!(
            read_until(&mut r, &mut seen, "event: change\ndata: {\"seq\": 5}\n\n").await,
            "{seen:?}"
        );
        assert!(!seen.contains("\"seq\": 1}"), "{seen:?}");
        // The next one waits for the debounce.
        running.shared.changes.bump();
        assert!(
            read_until(&mut r, &mut seen, "{\"seq\": 6}").await,
            "{seen:?}"
        );
        assert!(
            started.elapsed() >= EVENT_DEBOUNCE,
            "{:?}",
            started.elapsed()
        );

        // The stream ends when the controller stops, and does not hold the
        // shutdown.
        let stopping = Instant::now();
        running.shutdown().await;
        assert!(stopping.elapsed() < Duration::from_secs(4));
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = r.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the stream did not end");
        let _ = std::fs::remove_dir_all(dir);
    }
}
