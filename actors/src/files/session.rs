//! The daemon's stable broker session id (SPEC §5.6): `daemon-` plus 16 lowercase hex
//! characters, kept in `<daemon dir>/session-id` (0600) and used by every mesh's hello, on
//! every start. A head broker recognises a restarted daemon that says hello with it inside its
//! 90 s lease as the same presence (a silent reattach) instead of keeping a ghost.
//!
//! A file that does not hold a well-formed id (empty, truncated, edited) is **replaced** with a
//! fresh id and reported as [`SessionIdState::Replaced`] so the caller logs it: the id is no
//! secret and has no meaning beyond continuity, so refusing to start over it would cost more
//! than the one ghost presence (at most 90 s) a new id costs. A file with a mode wider than
//! 0600 is tightened.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rand::RngCore as _;

use super::{io_err, write_private_file, FilesError};

/// The prefix every daemon session id carries.
pub const SESSION_ID_PREFIX: &str = "daemon-";

/// How [`load_or_create_session_id`] found the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIdState {
    /// A well-formed id was read.
    Existing,
    /// There was no file; a new id was written.
    Created,
    /// The file held no well-formed id; a new one was written over it.
    Replaced {
        /// What was wrong with the old content (never the content itself).
        reason: &'static str,
    },
}

/// True for `daemon-` followed by exactly 16 lowercase hex characters.
pub fn is_session_id(s: &str) -> bool {
    s.strip_prefix(SESSION_ID_PREFIX).is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A fresh id: `daemon-` + 8 random bytes as lowercase hex.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SESSION_ID_PREFIX}{}", hex::encode(bytes))
}

/// Reads the session id at `path` (one line), or creates it (0600, atomically). See the
/// module doc for a malformed file.
pub fn load_or_create_session_id(path: &Path) -> Result<(String, SessionIdState), FilesError> {
    // Opened like every file of the daemon dir: no link followed, ours, one link.
    let opened = super::open_owned(path, fs::OpenOptions::new().read(true));
    let state = match opened {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_err("read", path))?;
            let mode = file
                .metadata()
                .map_err(io_err("stat", path))?
                .permissions()
                .mode()
                & 0o7777;
            if mode & !0o600 != 0 {
                file.set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(io_err("chmod", path))?;
            }
            match std::str::from_utf8(&bytes).map(str::trim) {
                Ok(id) if is_session_id(id) => {
                    return Ok((id.to_string(), SessionIdState::Existing))
                }
                Ok("") => SessionIdState::Replaced { reason: "empty" },
                Ok(_) => SessionIdState::Replaced {
                    reason: "not daemon-<16 lowercase hex>",
                },
                Err(_) => SessionIdState::Replaced {
                    reason: "not UTF-8",
                },
            }
        }
        Err(FilesError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            SessionIdState::Created
        }
        Err(e) => return Err(e),
    };
    let id = new_session_id();
    write_private_file(path, format!("{id}\n").as_bytes())?;
    Ok((id, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_once_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session-id");
        let (id, state) = load_or_create_session_id(&path).unwrap();
        assert_eq!(state, SessionIdState::Created);
        assert!(is_session_id(&id), "{id}");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{id}\n"));
        for _ in 0..3 {
            let (again, state) = load_or_create_session_id(&path).unwrap();
            assert_eq!(
                (again.as_str(), state),
                (id.as_str(), SessionIdState::Existing)
            );
        }
        let (other, _) = load_or_create_session_id(&dir.path().join("other")).unwrap();
        assert_ne!(other, id, "ids are random per daemon dir");
    }

    #[test]
    fn malformed_file_is_replaced_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session-id");
        for (content, reason) in [
            (&b""[..], "empty"),
            (b"daemon-1234", "not daemon-<16 lowercase hex>"),
            (b"daemon-0123456789ABCDEF", "not daemon-<16 lowercase hex>"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            fs::write(&path, content).unwrap();
            let (id, state) = load_or_create_session_id(&path).unwrap();
            assert_eq!(state, SessionIdState::Replaced { reason });
            assert!(is_session_id(&id));
            assert_eq!(load_or_create_session_id(&path).unwrap().0, id);
        }
    }

    #[test]
    fn wider_mode_is_tightened_and_the_id_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session-id");
        fs::write(&path, "daemon-00112233445566ff\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (id, state) = load_or_create_session_id(&path).unwrap();
        assert_eq!(
            (id.as_str(), state),
            ("daemon-00112233445566ff", SessionIdState::Existing)
        );
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn shape_check() {
        assert!(is_session_id("daemon-0123456789abcdef"));
        for bad in [
            "daemon-0123456789abcde",
            "cli-0123456789abcdef",
            "daemon-0123456789abcdeg",
            "daemon-42",
        ] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }
}
