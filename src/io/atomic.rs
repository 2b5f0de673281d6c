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

/// Several files of one folder written as one: each is written in full into a hidden staging
/// folder beside them (`.staging.tmp-PID`, which the next run's start removes like any killed
/// write's), under its own name (so a writer that goes by the extension, `.nii.gz`, writes
/// what the name says), and all are moved to their names only by [`Staged::commit`], once
/// every one is written. Dropped without a commit (a later file failed), it removes the staging
/// folder, so a failure leaves none of the files, neither new nor half of a set.
pub struct Staged {
    /// The staging folder (made at the first file).
    folder: PathBuf,
    /// (staged, final) paths, in the order staged.
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// Staging for files of the folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Staged { folder: dir.join(format!(".staging.tmp-{}", std::process::id())), files: vec![] }
    }

    /// Writes `path`'s content with `write`, given the staged path to write to (any writer of a
    /// path, atomic or not); an error names `path`, not the staged file.
    pub fn write(&mut self, path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let name = path.file_name().ok_or_else(|| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not name a file"),
            )
        })?;
        if self.files.is_empty() {
            let _ = fs::remove_dir_all(&self.folder);
            fs::create_dir_all(&self.folder).map_err(|e| Error::io(path, e))?;
        }
        let staged = self.folder.join(name);
        self.files.push((staged.clone(), path.to_path_buf()));
        write(&staged).map_err(|e| match e {
            Error::Io { path: p, cause } if p == staged => Error::io(path, cause),
            Error::Format { path: p, message } if p == staged => Error::format(path, message),
            e => e,
        })
    }

    /// Moves every staged file to its name (after checking none of the names is a folder, the
    /// one way a rename within a folder fails that can be foreseen), then makes the renames
    /// durable.
    pub fn commit(mut self) -> Result<()> {
        for (_, path) in &self.files {
            if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::IsADirectory, "a folder is in the way"),
                ));
            }
        }
        let mut parents = vec![];
        for (staged, path) in std::mem::take(&mut self.files) {
            fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !parents.contains(&dir.to_path_buf()) {
                    parents.push(dir.to_path_buf());
                }
            }
        }
        for dir in parents {
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.folder);
    }
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
    fn staged_files_appear_together_or_not_at_all() {
        let dir = scratch("staged");
        let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
        // a late failure: neither file, no temporary
        let mut staged = Staged::new(&dir);
        staged.write(&a, |p| write_bytes_atomic(p, b"first")).unwrap();
        let err = staged
            .write(&b, |p| {
                write_atomic(p, |w| w.write_all(b"x").and(Err(std::io::Error::other("disk full"))))
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.bin") && !err.contains(".staging") && err.contains("disk full"), "{err}");
        drop(staged);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "a failed set leaves nothing");
        // all written: both appear at commit, not before
        let mut staged = Staged::new(&dir);
        staged.write(&a, |p| write_bytes_atomic(p, b"first")).unwrap();
        staged.write(&b, |p| write_bytes_atomic(p, b"second")).unwrap();
        assert!(!a.exists() && !b.exists());
        staged.commit().unwrap();
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"first".to_vec(), b"second".to_vec()));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        // a folder in the way of the second: refused before the first is renamed
        fs::remove_file(&b).unwrap();
        fs::create_dir(&b).unwrap();
        let mut staged = Staged::new(&dir);
        staged.write(&a, |p| write_bytes_atomic(p, b"new")).unwrap();
        staged.write(&b, |p| write_bytes_atomic(p, b"new")).unwrap();
        assert!(staged.commit().unwrap_err().to_string().contains("b.bin"));
        assert_eq!(fs::read(&a).unwrap(), b"first");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "the staging folder removed");
        // a writer that goes by the extension sees the final name's
        let mut staged = Staged::new(&dir);
        staged
            .write(&dir.join("v.nii.gz"), |p| {
                assert!(p.to_string_lossy().ends_with("/v.nii.gz"), "{}", p.display());
                write_bytes_atomic(p, b"x")
            })
            .unwrap();
        staged.commit().unwrap();
        assert!(dir.join("v.nii.gz").is_file());
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
