//! The daemon's log file when it does not log to a terminal or a service manager
//! (`claudemeshd up --detach`, `up --log-file`, the launchd agent): a size-rotated file that
//! env_logger writes to as its `Target::Pipe`.
//!
//! Rotation: before a write that would take the file past `max_bytes`, `<path>.<keep-1>` →
//! `<path>.<keep>` … `<path>` → `<path>.1`, and a fresh `<path>` is opened; at most `keep`
//! rotated files are kept (the oldest is replaced). Invariants: a record is never split
//! across two files (env_logger hands over one formatted record per `write` call and every
//! `write` takes the whole buffer); every file is created 0600 (logs name peers and meshes);
//! a failed rotation keeps writing to the current file rather than losing records.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default rotation size: 10 MB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept beside the live one.
pub const DEFAULT_KEEP: usize = 3;

/// Opening the log file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log file {path}: {source}")]
pub struct LogFileError {
    /// The log file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// An append-only log file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in the live file (its length at open, plus what we wrote).
    size: u64,
    max_bytes: u64,
    keep: usize,
}

/// Opens the log for appending: `O_NOFOLLOW`, and only a regular file of ours with one link
/// (a planted `daemon.log -> victim` is refused, never appended to).
fn open_append(path: &Path) -> io::Result<File> {
    claudemesh_actors::files::open_owned(
        path,
        OpenOptions::new().create(true).append(true).mode(0o600),
    )
    .map_err(|e| match e {
        claudemesh_actors::files::FilesError::Io { source, .. } => source,
        other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
    })
}

impl RotatingFile {
    /// Opens (creating, 0600) `path` for appending; rotates at `max_bytes`, keeps `keep`
    /// rotated files (`keep` 0 means the live file is truncated on rotation).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Self, LogFileError> {
        let err = |source| LogFileError {
            path: path.to_path_buf(),
            source,
        };
        let file = open_append(path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
        })
    }

    /// `<path>.<n>`.
    pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.keep).rev() {
                let from = Self::rotated_path(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated_path(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, Self::rotated_path(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            // Keep logging into the current file if the rename fails (disk full, a
            // permission change): losing the daemon's log is worse than an oversized file.
            let _ = self.rotate();
        }
        self.file.write_all(buf)?;
        self.size += len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_at_the_size_limit_and_keeps_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut f = RotatingFile::open(&path, 10, 3).unwrap();
        for i in 0..6 {
            f.write_all(format!("record{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "record5\n");
        assert_eq!(read(&RotatingFile::rotated_path(&path, 1)), "record4\n");
        assert_eq!(read(&RotatingFile::rotated_path(&path, 2)), "record3\n");
        assert_eq!(read(&RotatingFile::rotated_path(&path, 3)), "record2\n");
        assert!(!RotatingFile::rotated_path(&path, 4).exists());
    }

    #[test]
    fn records_are_never_split_and_small_ones_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let mut f = RotatingFile::open(&path, 12, 3).unwrap();
        f.write_all(b"aaaa\n").unwrap();
        f.write_all(b"bbbb\n").unwrap();
        f.write_all(b"a record longer than the limit\n").unwrap();
        assert_eq!(read(&RotatingFile::rotated_path(&path, 1)), "aaaa\nbbbb\n");
        assert_eq!(read(&path), "a record longer than the limit\n");
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "old-content\n").unwrap();
        let mut f = RotatingFile::open(&path, 15, 3).unwrap();
        f.write_all(b"new\n").unwrap();
        assert_eq!(read(&path), "new\n");
        assert_eq!(read(&RotatingFile::rotated_path(&path, 1)), "old-content\n");
    }

    #[test]
    fn a_planted_log_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.path().join("daemon.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = RotatingFile::open(&path, 1024, 3).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(read(&victim), "precious\n");
    }

    #[test]
    fn log_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let mut f = RotatingFile::open(&path, 4, 3).unwrap();
        f.write_all(b"one\n").unwrap();
        f.write_all(b"two\n").unwrap();
        for p in [path.clone(), RotatingFile::rotated_path(&path, 1)] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}
