//! Writing to the stick so that nothing is ever half-written: everything goes into a hidden
//! temp directory on the stick itself, each file through the signer's private-file writer
//! (0600, fsync, atomic rename), and only when all of it is there are the top-level items
//! renamed into place, `manifest.json` last. A stick without `manifest.json` is refused by
//! the import as "not a ceremony stick", so an interrupted ceremony cannot be imported.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use vigil_signer::keystore;

use crate::error::CeremonyError;

/// A temp directory inside the output directory, removed on drop unless committed.
#[derive(Debug)]
pub struct Staging {
    out: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl Staging {
    /// Refuses an output dir that already holds any of `names`; creates the temp dir.
    pub fn new(out: &Path, names: &[&str]) -> Result<Self, CeremonyError> {
        let meta = fs::metadata(out).map_err(|e| CeremonyError::Read(out.to_path_buf(), e))?;
        if !meta.is_dir() {
            return Err(CeremonyError::Other(format!(
                "{} is not a directory: give the mounted stick's directory with --out",
                out.display()
            )));
        }
        for name in names {
            if fs::symlink_metadata(out.join(name)).is_ok() {
                return Err(CeremonyError::OutputNotEmpty(
                    out.to_path_buf(),
                    (*name).to_owned(),
                ));
            }
        }
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix)
            .map_err(|e| CeremonyError::Other(format!("the OS random source failed: {e}")))?;
        let tmp = out.join(format!(".vigil-ceremony.tmp-{}", hex::encode(suffix)));
        fs::create_dir(&tmp).map_err(|e| CeremonyError::Write(tmp.clone(), e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// The temp directory (write into it).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Creates a subdirectory of the temp directory.
    pub fn dir(&self, name: &str) -> Result<PathBuf, CeremonyError> {
        let d = self.tmp.join(name);
        fs::create_dir(&d).map_err(|e| CeremonyError::Write(d.clone(), e))?;
        Ok(d)
    }

    /// Writes one file (0600, fsync, atomic rename) at `rel` inside the temp directory.
    pub fn file(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf, CeremonyError> {
        let path = self.tmp.join(rel);
        keystore::write_private_file(&path, bytes)
            .map_err(|e| CeremonyError::Write(path.clone(), e))?;
        Ok(path)
    }

    /// Renames each of `names` (in order) from the temp directory into the output dir,
    /// fsyncs it, and removes the temp directory. Put `manifest.json` last.
    pub fn commit(mut self, names: &[&str]) -> Result<(), CeremonyError> {
        for sub in fs::read_dir(&self.tmp).map_err(|e| CeremonyError::Read(self.tmp.clone(), e))? {
            let sub = sub.map_err(|e| CeremonyError::Read(self.tmp.clone(), e))?;
            if sub.path().is_dir() {
                sync_dir(&sub.path())?;
            }
        }
        for name in names {
            let from = self.tmp.join(name);
            if fs::symlink_metadata(&from).is_err() {
                continue;
            }
            let to = self.out.join(name);
            fs::rename(&from, &to).map_err(|e| CeremonyError::Write(to, e))?;
        }
        fs::remove_dir(&self.tmp).map_err(|e| CeremonyError::Write(self.tmp.clone(), e))?;
        self.committed = true;
        sync_dir(&self.out)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: on an error path the caller reports the original error.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// fsync of a directory, so renames in it survive a power cut (or a pulled stick).
pub fn sync_dir(dir: &Path) -> Result<(), CeremonyError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| CeremonyError::Write(dir.to_path_buf(), e))
}

/// Reads a file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, CeremonyError> {
    let file = fs::File::open(path).map_err(|e| CeremonyError::Read(path.to_path_buf(), e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CeremonyError::Read(path.to_path_buf(), e))?;
    if bytes.len() as u64 > limit {
        return Err(CeremonyError::Other(format!(
            "{} is larger than {limit} bytes: check that the right file was given",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let out = tempfile::tempdir().unwrap();
        {
            let s = Staging::new(out.path(), &["manifest.json"]).unwrap();
            s.dir("keystore").unwrap();
            s.file("keystore/a.key", b"x").unwrap();
            // an error here: the staging is dropped without commit
        }
        assert!(names(out.path()).is_empty());
    }

    #[test]
    fn commit_moves_items_and_refuses_a_used_stick() {
        let out = tempfile::tempdir().unwrap();
        let s = Staging::new(out.path(), &["keystore", "manifest.json"]).unwrap();
        s.dir("keystore").unwrap();
        s.file("keystore/a.key", b"x").unwrap();
        s.file("manifest.json", b"{}").unwrap();
        s.commit(&["keystore", "manifest.json"]).unwrap();
        assert_eq!(names(out.path()), ["keystore", "manifest.json"]);
        assert_eq!(fs::read(out.path().join("keystore/a.key")).unwrap(), b"x");
        let err = Staging::new(out.path(), &["keystore", "manifest.json"]).unwrap_err();
        assert!(matches!(err, CeremonyError::OutputNotEmpty(..)), "{err}");
    }
}
