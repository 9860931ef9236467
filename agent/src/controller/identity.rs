//! The agent's instance id: how a controller tells this agent from every
//! other one, across reconnects and (with `--state-dir`) restarts.
//!
//! A host name is not enough: two agents may share one (pods of a
//! StatefulSet on different clusters, cloned VMs), and one host may run a
//! second agent for a test. So the id is random, generated once and kept.
//!
//! The controller binds a credential to the id on first contact; it is kept
//! next to the id (`agent-credential`, mode 0600) together with the id it
//! belongs to, so that an id that changes (a hand-pinned one, a replaced
//! file) never presents another id's credential. Without `--state-dir` the
//! credential lives as long as the process, like the id.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::exporter::otlp::retry::XorShift;

/// The file under `--state-dir` holding the instance id.
pub const INSTANCE_ID_FILE: &str = "instance-id";

/// The file under `--state-dir` holding the controller-issued credential.
pub const CREDENTIAL_FILE: &str = "agent-credential";

/// Longest instance id accepted from the state file.
const MAX_ID_LEN: usize = 128;
/// Longest credential accepted (the controller issues 64 hex characters).
const MAX_CREDENTIAL_LEN: usize = 256;

/// The instance id and whether it outlives this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    pub id: String,
    /// False when there is no `--state-dir` (or it is not writable): a
    /// restart will show up on the controller as a new agent.
    pub persistent: bool,
}

/// The id kept in `state_dir`, created there on first use. Without a
/// state dir (or when it cannot be written) the id is `host-<random>` and
/// lives as long as the process.
pub fn load_or_create(state_dir: Option<&Path>, host_name: &str) -> InstanceId {
    let Some(dir) = state_dir else {
        return ephemeral(host_name);
    };
    let path = dir.join(INSTANCE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_valid(text.trim()) => {
            return InstanceId {
                id: text.trim().to_string(),
                persistent: true,
            };
        }
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "the instance id file does not hold a valid id; generating a new one (the controller will see a new agent)"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the instance id; generating a new one")
        }
    }
    let id = random_uuid();
    match write_atomically(dir, INSTANCE_ID_FILE, &format!("{id}\n"), 0o644) {
        Ok(()) => InstanceId {
            id,
            persistent: true,
        },
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot keep the instance id in --state-dir; it lasts until the agent stops"
            );
            InstanceId {
                id,
                persistent: false,
            }
        }
    }
}

fn ephemeral(host_name: &str) -> InstanceId {
    let host: String = host_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(MAX_ID_LEN - 9)
        .collect();
    let suffix = &random_uuid()[..8];
    InstanceId {
        id: if host.is_empty() {
            format!("agent-{suffix}")
        } else {
            format!("{host}-{suffix}")
        },
        persistent: false,
    }
}

/// A file someone edited by hand is accepted if it is a plausible id (not
/// necessarily a UUID: an operator may pin a readable one).
fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether a credential can travel as gRPC metadata: visible ASCII.
pub fn is_valid_credential(credential: &str) -> bool {
    !credential.is_empty()
        && credential.len() <= MAX_CREDENTIAL_LEN
        && credential.bytes().all(|b| b.is_ascii_graphic())
}

/// The credential kept in `state_dir` for `instance_id`, if any. A file
/// for another id, or one that does not hold a credential, is ignored:
/// the agent then enrolls with the token like a new one.
pub fn load_credential(state_dir: &Path, instance_id: &str) -> Option<String> {
    let path = state_dir.join(CREDENTIAL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the agent credential; enrolling again");
            return None;
        }
    };
    if std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        tracing::warn!(
            path = %path.display(),
            "the agent credential file is readable by others than its owner: chmod 600 it"
        );
    }
    match text.trim().split_once(' ') {
        Some((id, credential)) if id == instance_id && is_valid_credential(credential) => {
            Some(credential.to_string())
        }
        Some((id, _)) if id != instance_id => {
            tracing::warn!(
                path = %path.display(),
                "the agent credential belongs to another instance id; enrolling again"
            );
            None
        }
        _ => {
            tracing::warn!(path = %path.display(), "the agent credential file is not valid; enrolling again");
            None
        }
    }
}

/// Keep the credential the controller issued to `instance_id`, readable
/// by the agent's user only.
pub fn store_credential(dir: &Path, instance_id: &str, credential: &str) -> std::io::Result<()> {
    write_atomically(
        dir,
        CREDENTIAL_FILE,
        &format!("{instance_id} {credential}\n"),
        0o600,
    )
}

/// [`store_credential`] off the async workers (it syncs to disk).
pub(crate) async fn keep_credential(
    dir: &Path,
    instance_id: &str,
    credential: &str,
) -> std::io::Result<()> {
    let (dir, id, kept) = (
        dir.to_path_buf(),
        instance_id.to_string(),
        credential.to_string(),
    );
    tokio::task::spawn_blocking(move || store_credential(&dir, &id, &kept))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

/// Written to a temporary file and renamed, like the remote config: a crash
/// never leaves an empty or half-written file behind. The temporary file is
/// created afresh with `mode`, so a secret is never readable by others,
/// not even for a moment.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// A random (version 4) UUID, lowercase hex with dashes.
fn random_uuid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_string(&b)
}

/// 16 random bytes. They come from the OS; should that fail, from the
/// clock-seeded generator the retries use, which is still unique enough to
/// tell agents apart.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    let os = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    if os.is_err() {
        let mut rng = XorShift::from_entropy();
        b[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    b
}

/// 16 bytes as a UUID string: lowercase hex with dashes.
pub(crate) fn uuid_string(b: &[u8; 16]) -> String {
    let hex = phoenix_processors::hash::hex(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The bytes of a UUID string (hyphenated, any case), or None.
pub(crate) fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    // `from_str_radix` would also take a sign.
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!(
            "phoenix-identity-{label}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4', "{a}");
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
        assert!(is_valid(&a));
        assert_eq!(uuid_bytes(&a).map(|b| uuid_string(&b)), Some(a));
        assert_eq!(
            uuid_bytes(&b.to_uppercase()).map(|b| uuid_string(&b)),
            Some(b)
        );
        assert_eq!(uuid_bytes("edge-agent-7"), None);
        assert_eq!(uuid_bytes("0000000g-0000-0000-0000-000000000000"), None);
        assert_eq!(uuid_bytes("00000000-0000-0000-0000-00000000000é"), None);
    }

    #[test]
    fn the_id_is_created_once_and_kept() {
        let dir = temp_dir("kept");
        let first = load_or_create(Some(&dir), "node-1");
        assert!(first.persistent);
        let again = load_or_create(Some(&dir), "node-1");
        assert_eq!(first, again);
        // A hand-pinned readable id is respected.
        std::fs::write(dir.join(INSTANCE_ID_FILE), "edge-agent-7\n").unwrap();
        assert_eq!(load_or_create(Some(&dir), "x").id, "edge-agent-7");
        // Garbage is replaced rather than sent to the controller.
        std::fs::write(dir.join(INSTANCE_ID_FILE), "not an id\u{1b}[31m").unwrap();
        let replaced = load_or_create(Some(&dir), "x");
        assert!(is_valid(&replaced.id) && replaced.id != "edge-agent-7");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_state_dir_the_id_is_the_host_and_a_random_suffix() {
        let a = load_or_create(None, "web-1.example");
        assert!(!a.persistent);
        assert!(a.id.starts_with("web-1.example-"), "{}", a.id);
        assert_ne!(a.id, load_or_create(None, "web-1.example").id);
        assert!(load_or_create(None, "").id.starts_with("agent-"));
        assert!(is_valid(&load_or_create(None, "wéird host/name").id));
    }

    #[test]
    fn the_credential_is_kept_owner_only_and_bound_to_its_id() {
        let dir = temp_dir("credential");
        assert_eq!(load_credential(&dir, "a"), None);
        store_credential(&dir, "a", "c0ffee").unwrap();
        let mode = std::fs::metadata(dir.join(CREDENTIAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_credential(&dir, "a").as_deref(), Some("c0ffee"));
        // Another id (a re-pinned instance-id file) does not get it.
        assert_eq!(load_credential(&dir, "b"), None);
        store_credential(&dir, "a", "beef").unwrap();
        assert_eq!(load_credential(&dir, "a").as_deref(), Some("beef"));
        std::fs::write(dir.join(CREDENTIAL_FILE), "a \u{1b}[31m\n").unwrap();
        assert_eq!(load_credential(&dir, "a"), None);
        assert!(!is_valid_credential("two words"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_state_dir_gives_an_ephemeral_id() {
        let file = temp_dir("file");
        std::fs::write(&file, "a file, not a directory").unwrap();
        let id = load_or_create(Some(&file), "h");
        assert!(!id.persistent);
        assert!(is_valid(&id.id));
        let _ = std::fs::remove_file(&file);
    }
}
