//! Failed sign-ins per client address: after [`MAX_FAILURES`] within
//! [`WINDOW`], every request from that address is refused (429) until the
//! window ends, before its credential is even looked at, so guessing tokens
//! costs a minute per ten guesses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once. Beyond it the oldest window is dropped: an
/// attacker with many addresses can forget its own old failures, never make
/// another client's count.
const MAX_CLIENTS: usize = 10_000;

struct Failures {
    since: Instant,
    count: u32,
}

#[derive(Default)]
pub struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

impl FailureLimiter {
    /// `Err(retry_after)` while `client` is over its limit.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&client) {
            Some(f) if f.count >= MAX_FAILURES => {
                let elapsed = now.saturating_duration_since(f.since);
                if elapsed < WINDOW {
                    Err(WINDOW - elapsed)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Count one failed sign-in of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, f| now.saturating_duration_since(f.since) < WINDOW);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, f)| f.since).map(|(a, _)| *a)
            {
                clients.remove(&oldest);
            }
        }
        let f = clients.entry(client).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.saturating_duration_since(f.since) >= WINDOW {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_limited_for_the_rest_of_its_window() {
        let l = FailureLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            l.failed(a, t0);
        }
        assert!(l.check(a, t0).is_ok());
        l.failed(a, t0);
        let retry = l.check(a, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(40));
        assert!(l.check(b, t0).is_ok(), "another address is not limited");
        assert!(l.check(a, t0 + WINDOW).is_ok(), "the window ends");
        l.failed(a, t0 + WINDOW);
        assert!(
            l.check(a, t0 + WINDOW).is_ok(),
            "a new window starts at one"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let l = FailureLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 5) {
            l.failed(
                IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(l.clients.lock().unwrap().len(), MAX_CLIENTS);
    }
}
