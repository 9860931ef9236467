//! The OpAMP instance uid: 16 bytes, the same in every message and, with
//! `--state-dir`, across restarts.
//!
//! It is derived from the agent's instance id, so one agent is one id
//! whichever protocol it speaks: an id that is a UUID (what the agent
//! generates) is used as it is. An id that is not one (pinned by hand, or
//! `host-<random>` without `--state-dir`) gets a UUIDv7 generated once and
//! kept next to it in `opamp-instance-uid`, together with the id it
//! belongs to, so that re-pinning the id gives a new uid.

use std::path::Path;

use crate::controller::identity::{self, InstanceId};

/// The file under `--state-dir` holding the uid of a non-UUID instance id.
pub const UID_FILE: &str = "opamp-instance-uid";

/// The uid for `instance_id`, from its own bytes or from `UID_FILE`.
pub fn load_or_create(state_dir: Option<&Path>, instance_id: &InstanceId) -> [u8; 16] {
    if let Some(bytes) = identity::uuid_bytes(&instance_id.id) {
        return bytes;
    }
    let dir = state_dir.filter(|_| instance_id.persistent);
    if let Some(dir) = dir {
        let path = dir.join(UID_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            match text.trim().split_once(' ') {
                Some((id, uid)) if id == instance_id.id => {
                    if let Some(bytes) = identity::uuid_bytes(uid) {
                        return bytes;
                    }
                    tracing::warn!(path = %path.display(), "the OpAMP instance uid file is not valid; generating a new uid");
                }
                _ => {
                    tracing::info!(path = %path.display(), "the OpAMP instance uid belongs to another instance id; generating a new uid")
                }
            }
        }
    }
    let uid = uuid_v7();
    if let Some(dir) = dir {
        let line = format!("{} {}\n", instance_id.id, identity::uuid_string(&uid));
        if let Err(e) = identity::write_atomically(dir, UID_FILE, &line, 0o644) {
            tracing::warn!(error = %e, "cannot keep the OpAMP instance uid in --state-dir; the server sees a new agent after a restart");
        }
    }
    uid
}

/// A version 7 UUID (RFC 9562): the Unix time in milliseconds, then
/// random bits. OpAMP recommends v7: uids sort by creation.
fn uuid_v7() -> [u8; 16] {
    let mut b = identity::random_bytes();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str, persistent: bool) -> InstanceId {
        InstanceId {
            id: text.into(),
            persistent,
        }
    }

    #[test]
    fn a_uuid_id_is_its_own_uid() {
        let text = "0190c3f2-6d1e-7a3b-9c4d-5e6f7a8b9c0d";
        let uid = load_or_create(None, &id(text, true));
        assert_eq!(identity::uuid_string(&uid), text);
    }

    #[test]
    fn another_id_gets_a_v7_uid_kept_next_to_it() {
        let dir = phoenix_tests::scratch_dir("opamp-uid");
        let pinned = id("edge-agent-7", true);
        let first = load_or_create(Some(&dir), &pinned);
        assert_eq!(first[6] >> 4, 7, "version 7");
        assert_eq!(first[8] >> 6, 0b10, "RFC variant");
        assert_eq!(load_or_create(Some(&dir), &pinned), first);
        // A re-pinned id does not inherit the uid.
        assert_ne!(load_or_create(Some(&dir), &id("edge-agent-8", true)), first);
        // Without a kept id nothing is kept: a new uid every time.
        let ephemeral = id("host-1234", false);
        assert_ne!(
            load_or_create(Some(&dir), &ephemeral),
            load_or_create(Some(&dir), &ephemeral)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
