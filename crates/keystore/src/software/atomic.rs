//! Crash-safe file replacement: write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. A
//! reader, or a process started after a crash at any point, sees either the
//! whole old file or the whole new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::KeyStoreError;

/// Atomically replaces `path` with `contents`, created with mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), KeyStoreError> {
    let dir = directory_of(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut suffix = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut suffix);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| KeyStoreError::io("creating", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| KeyStoreError::io("writing", &tmp, e))?;
        file.sync_all()
            .map_err(|e| KeyStoreError::io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| KeyStoreError::io("replacing", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| KeyStoreError::io("syncing directory", dir, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The directory a file is in: `.` for a bare name such as `t.restore`
/// (whose parent is the empty path, which cannot be opened to sync).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Removes temporary files a crash left behind. They never hold the only
/// copy of anything: the rename had not happened.
pub(crate) fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.starts_with(&prefix) && file_name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(directory_of(Path::new("t.restore")), Path::new("."));
        assert_eq!(directory_of(Path::new("./t.restore")), Path::new("."));
        assert_eq!(directory_of(Path::new("/var/t.restore")), Path::new("/var"));
        assert_eq!(directory_of(Path::new("a/b")), Path::new("a"));
    }
}
