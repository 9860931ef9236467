//! The live fleet: one session per connected agent, each with the sender
//! of its gRPC response stream, and the heartbeat clock that decides
//! online/offline. The store mirrors this (status, last seen) for the API
//! and for restarts; this is the part that can reach an agent right now.

pub mod rollout;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use phoenix_proto::v1::ControllerMessage;
use tokio::sync::{Notify, mpsc};
use tonic::Status;

/// What a session's response stream carries.
pub type Outbound = Result<ControllerMessage, Status>;

/// How many messages may wait for one agent. Pushes are rare; an agent
/// that lets this many pile up is stuck, and its session is closed so
/// that it reconnects and gets its desired config afresh.
pub const OUTBOUND_CAPACITY: usize = 16;

struct Session {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    last_seen: Instant,
    /// Unix ms of the Hello, as stored in `agents.connected_at`: marking the
    /// agent offline is conditional on it, so an old session ending never
    /// overrides a newer one.
    connected_ms: i64,
    /// Tells the session's reader to stop (replaced, timed out, shutdown).
    close: Arc<Notify>,
    /// Silent for longer than this: offline.
    timeout: Duration,
}

/// A registered session: its id and the signal that ends it.
pub struct SessionHandle {
    pub id: u64,
    pub connected_ms: i64,
    pub close: Arc<Notify>,
}

/// Why a message did not reach an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No session for this agent.
    Offline,
    /// The session's queue is full (the session is closed) or it just ended.
    Closed,
}

/// The sessions. Shared by the gRPC service, the rollout and the API.
pub struct Fleet {
    sessions: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
    /// No message for this long: offline (3 agent heartbeats by default).
    timeout: Duration,
}

impl Fleet {
    pub fn new(timeout: Duration) -> Fleet {
        Fleet {
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            timeout,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The heartbeat timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Register a session for `agent_id`. A session the same agent already
    /// had is closed: the newest connection wins (the old one is a
    /// half-dead TCP connection the agent gave up on).
    pub fn register(
        &self,
        agent_id: &str,
        tx: mpsc::Sender<Outbound>,
        connected_ms: i64,
    ) -> SessionHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let old = self.sessions().insert(
            agent_id.to_string(),
            Session {
                id,
                tx,
                last_seen: Instant::now(),
                connected_ms,
                close: close.clone(),
                timeout: self.timeout,
            },
        );
        if let Some(old) = old {
            tracing::info!(
                agent = agent_id,
                "agent reconnected: closing its previous session"
            );
            old.close.notify_one();
        }
        SessionHandle {
            id,
            connected_ms,
            close,
        }
    }

    /// A request of an agent that polls (OpAMP over HTTP): it is online
    /// from its first request until it is silent for `timeout`. Touches its
    /// session, or opens one connected at `now_ms`; returns the session's
    /// connect time and whether it is new. Nothing is ever sent on such a
    /// session: [`Fleet::send`] finds it closed.
    pub fn poll(&self, agent_id: &str, now_ms: i64, timeout: Duration) -> (i64, bool) {
        let mut sessions = self.sessions();
        if let Some(s) = sessions.get_mut(agent_id) {
            s.last_seen = Instant::now();
            s.timeout = timeout;
            return (s.connected_ms, false);
        }
        let (tx, _) = mpsc::channel(1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        sessions.insert(
            agent_id.to_string(),
            Session {
                id,
                tx,
                last_seen: Instant::now(),
                connected_ms: now_ms,
                close: Arc::new(Notify::new()),
                timeout,
            },
        );
        (now_ms, true)
    }

    /// The connect time of the agent's session, if it has one.
    pub fn connected_ms(&self, agent_id: &str) -> Option<i64> {
        self.sessions().get(agent_id).map(|s| s.connected_ms)
    }

    /// Forget the agent's session whatever it is (an OpAMP agent said it
    /// disconnects); returns its connect time if it had one.
    pub fn forget(&self, agent_id: &str) -> Option<i64> {
        self.sessions().remove(agent_id).map(|s| s.connected_ms)
    }

    /// A message arrived on session `session_id`.
    pub fn touch(&self, agent_id: &str, session_id: u64) {
        if let Some(s) = self.sessions().get_mut(agent_id)
            && s.id == session_id
        {
            s.last_seen = Instant::now();
        }
    }

    /// Forget session `session_id` if it is still the agent's current one.
    /// Returns whether it was (only then is the agent offline).
    pub fn remove_if_current(&self, agent_id: &str, session_id: u64) -> bool {
        let mut sessions = self.sessions();
        if sessions.get(agent_id).is_some_and(|s| s.id == session_id) {
            sessions.remove(agent_id);
            true
        } else {
            false
        }
    }

    /// Whether the agent has a session.
    pub fn is_online(&self, agent_id: &str) -> bool {
        self.sessions().contains_key(agent_id)
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue a message for an agent without waiting.
    pub fn send(&self, agent_id: &str, message: ControllerMessage) -> Result<(), SendError> {
        let mut sessions = self.sessions();
        let Some(s) = sessions.get(agent_id) else {
            return Err(SendError::Offline);
        };
        match s.tx.try_send(Ok(message)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    agent = agent_id,
                    "agent does not read its stream: closing the session"
                );
                if let Some(s) = sessions.remove(agent_id) {
                    s.close.notify_one();
                }
                Err(SendError::Closed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// Close and forget every session silent for longer than the timeout;
    /// returns their agent ids and connect times.
    pub fn expire(&self, now: Instant) -> Vec<(String, i64)> {
        let mut sessions = self.sessions();
        let expired: Vec<(String, i64)> = sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) > s.timeout)
            .map(|(id, s)| (id.clone(), s.connected_ms))
            .collect();
        for (id, _) in &expired {
            if let Some(s) = sessions.remove(id) {
                let timeout = s.timeout;
                s.end(Status::unavailable(format!(
                    "no message from the agent for {timeout:?}: session closed, reconnect"
                )));
            }
        }
        expired
    }

    /// Close and forget the agent's session, telling it why; returns its
    /// connect time if it had one.
    pub fn close(&self, agent_id: &str, why: Status) -> Option<i64> {
        let s = self.sessions().remove(agent_id)?;
        let connected = s.connected_ms;
        s.end(why);
        Some(connected)
    }

    /// Close every session (shutdown).
    pub fn close_all(&self) {
        for (_, s) in self.sessions().drain() {
            s.end(Status::unavailable("the controller is shutting down"));
        }
    }
}

impl Session {
    /// The agent learns why before the stream ends.
    fn end(self, why: Status) {
        let _ = self.tx.try_send(Err(why));
        self.close.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> ControllerMessage {
        ControllerMessage { body: None }
    }

    #[test]
    fn a_new_session_replaces_and_closes_the_old_one() {
        let fleet = Fleet::new(Duration::from_secs(30));
        let (tx1, _rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let first = fleet.register("a", tx1, 1);
        let second = fleet.register("a", tx2, 2);
        assert_ne!(first.id, second.id);
        // The old session's reader is told to stop, and its end does not
        // take the agent offline.
        assert!(!fleet.remove_if_current("a", first.id));
        assert!(fleet.is_online("a"));
        fleet.send("a", message()).unwrap();
        assert!(rx2.try_recv().is_ok());
        assert!(fleet.remove_if_current("a", second.id));
        assert_eq!(fleet.send("a", message()), Err(SendError::Offline));
    }

    #[test]
    fn silent_sessions_expire_and_a_full_queue_closes_the_session() {
        let fleet = Fleet::new(Duration::from_millis(10));
        let (tx, _rx) = mpsc::channel(1);
        let h = fleet.register("slow", tx, 1);
        fleet.send("slow", message()).unwrap();
        assert_eq!(fleet.send("slow", message()), Err(SendError::Closed));
        assert!(!fleet.is_online("slow"));
        drop(h);

        let (tx, _rx) = mpsc::channel(4);
        let h = fleet.register("quiet", tx, 7);
        fleet.touch("quiet", h.id);
        assert!(fleet.expire(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_millis(50);
        assert_eq!(fleet.expire(later), vec![("quiet".to_string(), 7)]);
        assert!(fleet.is_empty());
    }

    #[test]
    fn a_polling_agent_is_online_while_it_polls_with_its_own_timeout() {
        let fleet = Fleet::new(Duration::from_millis(10));
        assert_eq!(fleet.poll("p", 5, Duration::from_secs(60)), (5, true));
        assert_eq!(fleet.poll("p", 9, Duration::from_secs(60)), (5, false));
        assert_eq!(fleet.connected_ms("p"), Some(5));
        // Nothing can be sent to it.
        assert_eq!(fleet.send("p", message()), Err(SendError::Closed));
        // The fleet's 10 ms do not apply to it; its own 60 s do.
        let later = Instant::now() + Duration::from_millis(50);
        assert!(fleet.expire(later).is_empty());
        let much_later = Instant::now() + Duration::from_secs(61);
        assert_eq!(fleet.expire(much_later), vec![("p".to_string(), 5)]);
        assert_eq!(fleet.poll("p", 70, Duration::from_secs(60)), (70, true));
        assert_eq!(fleet.forget("p"), Some(70));
        assert!(!fleet.is_online("p"));
    }
}
