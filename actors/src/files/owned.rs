//! Opening files in the daemon dir without trusting them (issue 13 item 9): `O_NOFOLLOW`,
//! then `fstat` — a regular file, owned by our effective uid, with one link — before anything
//! is read, written or truncated. Pure std + libc.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{io_err, FilesError};

/// Our effective uid (the owner everything in the daemon dir must have).
pub fn our_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens `path` with `options` plus `O_NOFOLLOW|O_CLOEXEC`, then checks with `fstat` that
/// it is a regular file with one link, owned by us. A symbolic link (`ELOOP`) and the other
/// refusals are [`FilesError::Untrusted`] / [`FilesError::NotOwned`]; a missing file is
/// [`FilesError::Io`] with `NotFound`.
pub fn open_owned(path: &Path, options: &mut OpenOptions) -> Result<File, FilesError> {
    use std::os::unix::fs::MetadataExt;
    let file = match options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FilesError::Untrusted {
                path: path.to_path_buf(),
                what: "a symbolic link".into(),
            })
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let meta = file.metadata().map_err(io_err("stat", path))?;
    check_owned_meta(path, &meta)?;
    if !meta.file_type().is_file() {
        return Err(FilesError::Untrusted {
            path: path.to_path_buf(),
            what: "not a regular file".into(),
        });
    }
    if meta.nlink() > 1 {
        return Err(FilesError::Untrusted {
            path: path.to_path_buf(),
            what: format!("a file with {} hard links", meta.nlink()),
        });
    }
    Ok(file)
}

fn check_owned_meta(path: &Path, meta: &fs::Metadata) -> Result<(), FilesError> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != our_uid() {
        return Err(FilesError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            ours: our_uid(),
        });
    }
    Ok(())
}

/// For files opened by others on our behalf (SQLite databases): absent is fine; a symbolic
/// link, a hard link, a non-regular file or another user's file is refused, as by
/// [`open_owned`].
pub fn check_entry(path: &Path) -> Result<(), FilesError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    let what = if meta.file_type().is_symlink() {
        Some("a symbolic link".to_string())
    } else if !meta.file_type().is_file() {
        Some("not a regular file".to_string())
    } else if meta.nlink() > 1 {
        Some(format!("a file with {} hard links", meta.nlink()))
    } else {
        None
    };
    if let Some(what) = what {
        return Err(FilesError::Untrusted {
            path: path.to_path_buf(),
            what,
        });
    }
    check_owned_meta(path, &meta)
}
