//! Atomic file writes: a reader never sees a half-written mesh or volume, and a crash or a full disk
//! leaves the previous file (if any) in place.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `path` by calling `f` on a buffered temporary file in the same folder (`.name.tmp-PID`),
/// then flushes, fsyncs and renames it over `path`. On any error the temporary file is removed and
/// `path` is left untouched.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = write_then_rename(&tmp, path, f);
    if result.is_err() {
        // Best effort: the temp file may not exist if creating it failed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not name a file"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// The process id in the name of a temporary file [`write_atomic`] makes (`.NAME.tmp-PID`), or
/// None for any other name.
pub fn atomic_temp_pid(file_name: &str) -> Option<u32> {
    let (stem, pid) = file_name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let file = File::create(tmp).map_err(|e| Error::io(path, e))?;
    let mut writer = BufWriter::new(file);
    f(&mut writer).map_err(|e| Error::io(path, e))?;
    let file = writer.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    // Make the rename itself durable; not all platforms can open a folder, so this is best effort.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ffvol-io-atomic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn temp_names_are_recognised() {
        let path = PathBuf::from("/x/checkpoint.safetensors");
        let tmp = temp_path(&path).unwrap();
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(atomic_temp_pid(name), Some(std::process::id()));
        for other in ["checkpoint.safetensors", ".tmp-12", ".a.tmp-", ".a.tmp-12x", "a.tmp-12"] {
            assert_eq!(atomic_temp_pid(other), None, "{other}");
        }
    }

    #[test]
    fn writes_and_replaces() {
        let dir = scratch("replace");
        let path = dir.join("a.bin");
        write_bytes_atomic(&path, b"first").expect("write");
        write_bytes_atomic(&path, b"second").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"second");
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 1, "no temp file left");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn failure_keeps_old_file_and_removes_temp() {
        let dir = scratch("fail");
        let path = dir.join("a.bin");
        write_bytes_atomic(&path, b"old").expect("write");
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .expect_err("must fail");
        assert!(err.to_string().contains("a.bin"), "{err}");
        assert_eq!(fs::read(&path).expect("read"), b"old");
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 1, "temp file removed");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_file() {
        let dir = scratch("missing");
        let path = dir.join("no/such/folder/x.ply");
        let err = write_bytes_atomic(&path, b"x").expect_err("must fail");
        assert!(err.to_string().contains("x.ply"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
