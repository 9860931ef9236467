//! uid → user name for `process.owner`, from `<root>/etc/passwd`.
//!
//! The file is read once when the receiver starts: the agent may watch a
//! host's `/proc` from inside a container (`root_path: /host`), where NSS
//! would answer for the container's users, not the host's, so the host's
//! passwd file is parsed directly. Users added later show as their numeric
//! uid until the agent restarts, which is what `ps` does for unknown uids too.

use std::collections::HashMap;
use std::path::Path;

use phoenix_processors::Str;

use super::parse::passwd_entries;

/// The uid → name table.
#[derive(Debug, Default)]
pub struct Users {
    names: HashMap<u32, Str>,
}

impl Users {
    /// Read `path`; a missing or unreadable file gives an empty table, so
    /// every owner shows as a numeric uid rather than the receiver failing.
    pub fn load(path: &Path) -> Users {
        match std::fs::read(path) {
            Ok(bytes) => Users::from_passwd(&bytes),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no passwd file; owners will be numeric uids");
                Users::default()
            }
        }
    }

    pub fn from_passwd(bytes: &[u8]) -> Users {
        let mut names = HashMap::new();
        for entry in passwd_entries(bytes) {
            // The first line for a uid wins, as with getpwuid(3).
            names
                .entry(entry.uid)
                .or_insert_with(|| Str::from(String::from_utf8_lossy(entry.name).as_ref()));
        }
        Users { names }
    }

    /// The name of `uid`, or the uid as a decimal string when it has none
    /// (remembered, so it is formatted once).
    pub fn name(&mut self, uid: u32) -> Str {
        self.names
            .entry(uid)
            .or_insert_with(|| Str::from(uid.to_string().as_str()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_uids_map_to_names_unknown_to_numbers() {
        let mut users = Users::from_passwd(
            b"root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nshadow:x:33:33::/:/bin/false\n",
        );
        assert_eq!(&*users.name(0), "root");
        assert_eq!(&*users.name(33), "www-data");
        assert_eq!(&*users.name(1000), "1000");
        // The unknown uid's string is made once and shared.
        assert!(std::sync::Arc::ptr_eq(&users.name(1000), &users.name(1000)));
    }

    #[test]
    fn missing_file_gives_numeric_owners() {
        let mut users = Users::load(Path::new("/nonexistent/phoenix/etc/passwd"));
        assert_eq!(&*users.name(0), "0");
    }
}
