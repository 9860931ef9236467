//! OpAMP's two transports behind one face: [`Link::send`] delivers an
//! `AgentToServer` (over HTTP the answer comes back at once), and
//! [`Link::recv`] waits for what the server sends on its own (WebSocket
//! only; over HTTP it never returns).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use phoenix_proto::opamp as pb;
use prost::Message as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::{Endpoint, Transport};
use crate::exporter::otlp::http::{parse_retry_after, read_limited};
use crate::exporter::otlp::{error_chain, sanitize};

/// Largest `ServerToAgent` accepted, on either transport: a whole config
/// with room to spare, and a bound on what a hostile server can make the
/// agent hold.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One HTTP exchange, or one WebSocket handshake or write: a server that
/// accepted the connection but never answers is treated like one that is
/// down.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A `Retry-After` beyond this is taken as this: a hostile or confused
/// server must not silence the agent for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
const PROTOBUF: &str = "application/x-protobuf";

/// Why an exchange failed, which decides what the client does next.
#[derive(Debug)]
pub enum Failure {
    /// Not reachable, broken connection, timeout, 5xx: retry with backoff.
    Transport(String),
    /// The server asked to be left alone (HTTP 503 `Retry-After`, or an
    /// `Unavailable` error response): retry, no sooner than this.
    Unavailable(String, Option<Duration>),
    /// 401/403: the token or credential is refused. Retried with backoff
    /// (someone may fix it), logged as an error.
    Refused(String),
    /// The server will not take this message (`BadRequest`, another 4xx):
    /// sending it again would get the same answer.
    Rejected(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transport(r)
            | Failure::Unavailable(r, _)
            | Failure::Refused(r)
            | Failure::Rejected(r) => r,
        }
    }
}

/// An open way to the server.
pub enum Link {
    Http(Http),
    WebSocket(Box<WebSocketStream<Box<dyn Io>>>),
}

/// What a WebSocket runs over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Http {
    client: reqwest::Client,
    url: reqwest::Url,
}

/// Open a link: for HTTP a client (connections are made per request), for
/// WebSocket the connection and its handshake, carrying `headers` (over
/// HTTP they go with each request, see [`Link::send`]).
pub async fn connect(endpoint: &Endpoint, headers: &HeaderMap) -> Result<Link, Failure> {
    match endpoint.transport {
        Transport::Http => {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(EXCHANGE_TIMEOUT)
                .user_agent(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION")))
                // A redirect would turn the POST into a GET and could carry
                // the token elsewhere.
                .redirect(reqwest::redirect::Policy::none());
            builder = match &endpoint.tls {
                Some(tls) => builder.use_preconfigured_tls(tls.as_ref().clone()),
                None => builder.tls_built_in_root_certs(false),
            };
            let client = builder
                .build()
                .map_err(|e| Failure::Transport(format!("HTTP client: {}", error_chain(&e))))?;
            Ok(Link::Http(Http {
                client,
                url: endpoint.url.clone(),
            }))
        }
        Transport::WebSocket => {
            let socket = tokio::time::timeout(EXCHANGE_TIMEOUT, websocket(endpoint, headers))
                .await
                .map_err(|_| {
                    Failure::Transport(format!(
                        "no WebSocket handshake within {EXCHANGE_TIMEOUT:?}"
                    ))
                })??;
            Ok(Link::WebSocket(Box::new(socket)))
        }
    }
}

async fn websocket(
    endpoint: &Endpoint,
    headers: &HeaderMap,
) -> Result<WebSocketStream<Box<dyn Io>>, Failure> {
    let url = &endpoint.url;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)),
    )
    .await
    .map_err(|_| Failure::Transport(format!("no connection within {CONNECT_TIMEOUT:?}")))?
    .map_err(|e| Failure::Transport(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &endpoint.tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            )
            .map_err(|e| Failure::Transport(format!("TLS server name {host:?}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Transport(format!("TLS: {}", error_chain(&e))))?;
            Box::new(stream)
        }
        None => Box::new(tcp),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::Transport(format!("WebSocket request: {e}")))?;
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_static(concat!("phoenix-agent/", env!("CARGO_PKG_VERSION"))),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    match client_async_with_config(request, io, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let retry_after = parse_retry_after(response.headers());
            Err(http_failure(
                response.status(),
                retry_after,
                response.body().as_deref().unwrap_or_default(),
            ))
        }
        Err(e) => Err(Failure::Transport(format!("WebSocket handshake: {e}"))),
    }
}

impl Link {
    /// Deliver one message, over HTTP with `headers` (a WebSocket presented
    /// its own in the handshake). Over HTTP the server's answer comes back
    /// (a `ServerToAgent` with an error response is a [`Failure`]); over
    /// WebSocket answers arrive through [`Link::recv`].
    pub async fn send(
        &mut self,
        message: &pb::AgentToServer,
        headers: &HeaderMap,
    ) -> Result<Option<pb::ServerToAgent>, Failure> {
        match self {
            Link::Http(http) => http.exchange(message, headers).await.map(Some),
            Link::WebSocket(socket) => {
                // OpAMP's WebSocket header: a varint, 0 for now.
                let mut frame = Vec::with_capacity(1 + message.encoded_len());
                frame.push(0);
                message
                    .encode(&mut frame)
                    .map_err(|e| Failure::Transport(e.to_string()))?;
                tokio::time::timeout(EXCHANGE_TIMEOUT, socket.send(Message::Binary(frame.into())))
                    .await
                    .map_err(|_| Failure::Transport("the WebSocket write stalled".into()))?
                    .map_err(|e| Failure::Transport(format!("WebSocket: {e}")))?;
                Ok(None)
            }
        }
    }

    /// The next message the server sends by itself. Pings are answered by
    /// the WebSocket layer; text messages are ignored (OpAMP sends binary
    /// only). Over HTTP this waits forever: the server only answers.
    pub async fn recv(&mut self) -> Result<pb::ServerToAgent, Failure> {
        let Link::WebSocket(socket) = self else {
            return std::future::pending().await;
        };
        loop {
            let message = match socket.next().await {
                None => return Err(Failure::Transport("the server closed the WebSocket".into())),
                Some(Err(e)) => return Err(Failure::Transport(format!("WebSocket: {e}"))),
                Some(Ok(m)) => m,
            };
            match message {
                Message::Binary(bytes) => {
                    let body = strip_header(&bytes).ok_or_else(|| {
                        Failure::Transport("a WebSocket message without OpAMP's header".into())
                    })?;
                    let reply = pb::ServerToAgent::decode(body)
                        .map_err(|e| Failure::Transport(format!("not a ServerToAgent: {e}")))?;
                    return answer(reply);
                }
                Message::Close(frame) => {
                    let why = frame
                        .map(|f| format!(": {} {}", u16::from(f.code), sanitize(&f.reason, 128)))
                        .unwrap_or_default();
                    return Err(Failure::Transport(format!(
                        "the server closed the WebSocket{why}"
                    )));
                }
                Message::Text(_) => tracing::debug!("ignoring a text WebSocket message"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Close politely (WebSocket); nothing to do over HTTP.
    pub async fn close(self) {
        if let Link::WebSocket(mut socket) = self {
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
        }
    }
}

impl Http {
    async fn exchange(
        &self,
        message: &pb::AgentToServer,
        headers: &HeaderMap,
    ) -> Result<pb::ServerToAgent, Failure> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(headers.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .body(message.encode_to_vec())
            .send()
            .await
            .map_err(|e| Failure::Transport(error_chain(&e)))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        // One byte more than allowed tells "too large" from "just fits".
        let body = read_limited(response, MAX_MESSAGE_BYTES + 1).await;
        if !status.is_success() {
            return Err(http_failure(status, retry_after, &body));
        }
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(Failure::Transport(format!(
                "the server's answer is over {MAX_MESSAGE_BYTES} bytes"
            )));
        }
        let reply = pb::ServerToAgent::decode(body.as_slice())
            .map_err(|e| Failure::Transport(format!("not a ServerToAgent: {e}")))?;
        answer(reply)
    }
}

/// The body after OpAMP's varint header, or None when the header is cut.
fn strip_header(bytes: &[u8]) -> Option<&[u8]> {
    // A varint ends at the first byte without the high bit; ten bytes at most.
    let end = bytes.iter().take(10).position(|b| b & 0x80 == 0)?;
    Some(&bytes[end + 1..])
}

/// A `ServerToAgent` carrying an error response is a failure.
fn answer(reply: pb::ServerToAgent) -> Result<pb::ServerToAgent, Failure> {
    let Some(error) = &reply.error_response else {
        return Ok(reply);
    };
    let message = sanitize(&error.error_message, 256);
    Err(match pb::ServerErrorResponseType::try_from(error.r#type) {
        Ok(pb::ServerErrorResponseType::Unavailable) => {
            let after = error.details.as_ref().map(
                |pb::server_error_response::Details::RetryInfo(info)| {
                    Duration::from_nanos(info.retry_after_nanoseconds)
                },
            );
            Failure::Unavailable(format!("unavailable: {message}"), bound(after))
        }
        // BadRequest, Unknown ("do not retry") and types a newer server
        // may define: this message will not be taken.
        _ => Failure::Rejected(format!("refused the message: {message}")),
    })
}

/// An HTTP error status (with the `ServerToAgent` error response some
/// servers put in the body) as a failure.
fn http_failure(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Failure {
    let detail = pb::ServerToAgent::decode(body)
        .ok()
        .and_then(|r| r.error_response)
        .map(|e| sanitize(&e.error_message, 256))
        .filter(|m| !m.is_empty())
        .or_else(|| {
            let text = sanitize(&String::from_utf8_lossy(&body[..body.len().min(512)]), 256);
            (!text.trim().is_empty()).then_some(text)
        });
    let reason = match detail {
        Some(detail) => format!("HTTP {status}: {detail}"),
        None => format!("HTTP {status}"),
    };
    match status.as_u16() {
        401 | 403 => Failure::Refused(reason),
        429 | 503 => Failure::Unavailable(reason, bound(retry_after)),
        400..=499 => Failure::Rejected(reason),
        _ => Failure::Transport(reason),
    }
}

fn bound(after: Option<Duration>) -> Option<Duration> {
    after.map(|d| d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_varint_header_is_stripped_and_a_cut_one_refused() {
        assert_eq!(strip_header(&[0, 1, 2]), Some(&[1u8, 2][..]));
        assert_eq!(strip_header(&[0x81, 0x01, 7]), Some(&[7u8][..]));
        assert_eq!(strip_header(&[0x80]), None);
        assert_eq!(strip_header(&[]), None);
        assert_eq!(strip_header(&[0xff; 11]), None);
    }

    #[test]
    fn error_responses_and_statuses_say_what_to_do() {
        let unavailable = pb::ServerToAgent {
            error_response: Some(pb::ServerErrorResponse {
                r#type: pb::ServerErrorResponseType::Unavailable as i32,
                error_message: "busy".into(),
                details: Some(pb::server_error_response::Details::RetryInfo(
                    pb::RetryInfo {
                        retry_after_nanoseconds: u64::MAX,
                    },
                )),
            }),
            ..Default::default()
        };
        assert!(matches!(
            answer(unavailable),
            Err(Failure::Unavailable(_, Some(d))) if d == MAX_RETRY_AFTER
        ));
        let bad = pb::ServerToAgent {
            error_response: Some(pb::ServerErrorResponse {
                r#type: pb::ServerErrorResponseType::BadRequest as i32,
                error_message: "no\u{1b}uid".into(),
                details: None,
            }),
            ..Default::default()
        };
        let body = bad.encode_to_vec();
        assert!(matches!(answer(bad), Err(Failure::Rejected(r)) if r.contains("no uid")));
        let status = |code: u16| reqwest::StatusCode::from_u16(code).unwrap();
        assert!(matches!(
            http_failure(status(400), None, &body),
            Failure::Rejected(r) if r == "HTTP 400 Bad Request: no uid"
        ));
        assert!(matches!(
            http_failure(status(503), Some(Duration::from_secs(7)), b""),
            Failure::Unavailable(_, Some(d)) if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            http_failure(status(401), None, b"who?"),
            Failure::Refused(_)
        ));
        assert!(matches!(
            http_failure(status(502), None, b""),
            Failure::Transport(_)
        ));
    }
}
