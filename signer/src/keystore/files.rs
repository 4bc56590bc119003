//! Private files: written 0600 through a temp file, fsync and an atomic rename (then an fsync
//! of the directory, so the rename itself survives a power cut), and refused when read if
//! other users may read or change them. Also where the keystore passphrase comes from.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{KeystoreError, PASSPHRASE_CREDENTIAL};

/// Longest passphrase accepted, in bytes.
const MAX_PASSPHRASE: usize = 4096;
/// Permission bits that make a file "not private": anything for group or others.
const GROUP_OR_WORLD: u32 = 0o077;
/// Permission bits for others only (systemd makes credentials 0400/0440, owned by the service).
const WORLD: u32 = 0o007;

/// Whether a final symlink in a path is followed when opening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Symlinks {
    /// Keystore entries: a symlink is refused.
    Refuse,
    /// Passphrase files: a symlink to a private file is fine.
    Follow,
}

/// The passphrase: `explicit_file` if given, else `$CREDENTIALS_DIRECTORY/vigil-keystore-passphrase` (systemd credential), else an error saying both ways to provide it. Never any other fallback. Strips one trailing "\n" (or "\r\n"); refuses empty; refuses a group/world-readable file (message says `chmod 600 <path>`) — but systemd credential files are fine as systemd makes them 0400/0440 owned by the service user: only refuse world-readable for the credential path, refuse group|world for explicit files.
pub fn read_passphrase(explicit_file: Option<&Path>) -> Result<SecretString, KeystoreError> {
    let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    read_passphrase_from(explicit_file, credentials_dir.as_deref())
}

/// [`read_passphrase`] with the systemd credentials directory given rather than read from the
/// environment (so tests need not touch process-wide state).
pub fn read_passphrase_from(
    explicit_file: Option<&Path>,
    credentials_dir: Option<&Path>,
) -> Result<SecretString, KeystoreError> {
    let (path, forbidden) = match (explicit_file, credentials_dir) {
        (Some(file), _) => (file.to_path_buf(), GROUP_OR_WORLD),
        (None, Some(dir)) => (dir.join(PASSPHRASE_CREDENTIAL), WORLD),
        (None, None) => return Err(KeystoreError::NoPassphrase),
    };
    let mut file = open_private(&path, Symlinks::Follow, forbidden)?;

    // A fixed buffer read with plain `read` calls: no reallocation can leave a copy behind.
    let mut buf = Zeroizing::new([0u8; MAX_PASSPHRASE + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(KeystoreError::Read { path, source }),
        }
    }
    if len > MAX_PASSPHRASE {
        return Err(KeystoreError::TooLarge {
            path,
            limit: MAX_PASSPHRASE,
        });
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| KeystoreError::PassphraseNotUtf8(path.clone()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(KeystoreError::EmptyPassphrase(path));
    }
    // Exact capacity, so `SecretString::from` (which boxes the string) does not reallocate.
    let mut owned = String::with_capacity(text.len());
    owned.push_str(text);
    Ok(SecretString::from(owned))
}

/// Writes a private file 0600 through a temp file in the same dir, fsync, atomic rename, fsync of the dir. (Also used by dev-init.)
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, bytes, Replace::Yes)
}

/// Refuses a file that is group- or world-readable/writable, saying how to fix it (`chmod 600 <path>`).
pub fn check_private_file(path: &Path) -> Result<(), KeystoreError> {
    let meta = std::fs::metadata(path).map_err(|source| KeystoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_metadata(path, &meta, GROUP_OR_WORLD)
}

/// Whether [`write_atomic`] may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Replace {
    /// Replace it atomically.
    Yes,
    /// Fail with `AlreadyExists` (keystore entries: a key is never overwritten).
    No,
}

/// Writes `bytes` to `path` 0600 via a temp file, fsync, rename and an fsync of the directory.
/// The temp file is removed again if anything fails before the rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], replace: Replace) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));

    let written = write_new(&tmp, bytes).and_then(|()| match replace {
        Replace::Yes => std::fs::rename(&tmp, path),
        Replace::No => rename_no_replace(&tmp, path),
    });
    if let Err(e) = written {
        // Best effort: the temp file may not even have been created.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Creates `path` (which must not exist) 0600, writes `bytes` and fsyncs it.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // The umask can only remove bits from 0600, but make the mode exact anyway.
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames `from` to `to` (a file or a directory), failing with `AlreadyExists` if `to`
/// exists (renameat2 RENAME_NOREPLACE; on a filesystem without it, a check then a rename).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens a file for reading and checks, on the open descriptor, that it is a regular file with
/// none of the `forbidden` permission bits. Never blocks on a FIFO.
pub(super) fn open_private(
    path: &Path,
    symlinks: Symlinks,
    forbidden: u32,
) -> Result<File, KeystoreError> {
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(KeystoreError::NotRegularFile(path.to_path_buf()));
        }
        Err(source) => {
            return Err(KeystoreError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| KeystoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_metadata(path, &meta, forbidden)?;
    Ok(file)
}

/// Reads a small private file (a keystore entry) as text, refusing more than `limit` bytes.
pub(super) fn read_private_text(path: &Path, limit: usize) -> Result<String, KeystoreError> {
    let file = open_private(path, Symlinks::Refuse, GROUP_OR_WORLD)?;
    let mut text = String::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_string(&mut text)
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidData => KeystoreError::Malformed {
                path: path.to_path_buf(),
                reason: "it is not UTF-8 text".to_owned(),
            },
            _ => KeystoreError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
    if text.len() > limit {
        return Err(KeystoreError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(text)
}

/// A keystore entry's metadata (from a directory listing): a regular file, private to its owner.
pub(super) fn check_entry_metadata(
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), KeystoreError> {
    check_metadata(path, meta, GROUP_OR_WORLD)
}

/// A regular file with none of the `forbidden` permission bits.
fn check_metadata(
    path: &Path,
    meta: &std::fs::Metadata,
    forbidden: u32,
) -> Result<(), KeystoreError> {
    if !meta.file_type().is_file() {
        return Err(KeystoreError::NotRegularFile(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(KeystoreError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    use crate::keystore::entry::tests::names_in;

    fn file_with(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn write_private_file_is_0600_atomic_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.bin");
        write_private_file(&path, b"first").unwrap();
        write_private_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(names_in(dir.path()), ["secret.bin"]);
        check_private_file(&path).unwrap();
    }

    #[test]
    fn no_replace_refuses_an_existing_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.key");
        write_atomic(&path, b"one", Replace::No).unwrap();
        let err = write_atomic(&path, b"two", Replace::No).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(names_in(dir.path()), ["entry.key"]);
    }

    #[test]
    fn check_private_file_table() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o604, false),
            (0o620, false),
            (0o644, false),
        ] {
            let path = file_with(dir.path(), &format!("f{mode:o}"), b"x", mode);
            match check_private_file(&path) {
                Ok(()) => assert!(ok, "{mode:o} accepted"),
                Err(e) => {
                    assert!(!ok, "{mode:o} refused: {e}");
                    assert!(
                        e.to_string()
                            .contains(&format!("chmod 600 {}", path.display())),
                        "{e}"
                    );
                }
            }
        }
        let err = check_private_file(dir.path()).unwrap_err();
        assert!(matches!(err, KeystoreError::NotRegularFile(_)), "{err}");
    }

    #[test]
    fn entry_reader_refuses_symlinks_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with(dir.path(), "real.key", b"{}", 0o600);
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_private_text(&link, 100),
            Err(KeystoreError::NotRegularFile(_))
        ));
        assert_eq!(read_private_text(&target, 100).unwrap(), "{}");
        let big = file_with(dir.path(), "big.key", &[b'a'; 101], 0o600);
        assert!(matches!(
            read_private_text(&big, 100),
            Err(KeystoreError::TooLarge { limit: 100, .. })
        ));
    }

    #[test]
    fn passphrase_from_explicit_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 5] = [
            (b"correct horse\n", "correct horse"),
            (b"correct horse\r\n", "correct horse"),
            (b"correct horse", "correct horse"),
            (b"two newlines\n\n", "two newlines\n"),
            (b" spaces kept ", " spaces kept "),
        ];
        for (content, want) in cases {
            let path = file_with(dir.path(), "pass", content, 0o600);
            let got = read_passphrase_from(Some(&path), None).unwrap();
            assert_eq!(got.expose_secret(), want);
        }
    }

    #[test]
    fn explicit_file_wins_over_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        file_with(
            creds.path(),
            PASSPHRASE_CREDENTIAL,
            b"from-credential\n",
            0o400,
        );
        let explicit = file_with(dir.path(), "pass", b"from-file\n", 0o600);
        assert_eq!(
            read_passphrase_from(Some(&explicit), Some(creds.path()))
                .unwrap()
                .expose_secret(),
            "from-file"
        );
        assert_eq!(
            read_passphrase_from(None, Some(creds.path()))
                .unwrap()
                .expose_secret(),
            "from-credential"
        );
    }

    #[test]
    fn credential_may_be_group_readable_but_not_world_readable() {
        let creds = tempfile::tempdir().unwrap();
        let path = file_with(creds.path(), PASSPHRASE_CREDENTIAL, b"pw\n", 0o440);
        assert_eq!(
            read_passphrase_from(None, Some(creds.path()))
                .unwrap()
                .expose_secret(),
            "pw"
        );
        std::fs::set_permissions(&path, Permissions::from_mode(0o444)).unwrap();
        let err = read_passphrase_from(None, Some(creds.path())).unwrap_err();
        assert!(
            matches!(err, KeystoreError::InsecurePermissions { .. }),
            "{err}"
        );
    }

    #[test]
    fn explicit_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "pass", b"pw\n", 0o640);
        let err = read_passphrase_from(Some(&path), None).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn missing_credential_is_an_error_not_a_fallback() {
        let creds = tempfile::tempdir().unwrap();
        let err = read_passphrase_from(None, Some(creds.path())).unwrap_err();
        assert!(matches!(err, KeystoreError::Read { .. }), "{err}");
        assert!(err.to_string().contains(PASSPHRASE_CREDENTIAL), "{err}");
    }

    #[test]
    fn no_source_names_both_options() {
        let msg = read_passphrase_from(None, None).unwrap_err().to_string();
        assert!(msg.contains("passphrase-file"), "{msg}");
        assert!(
            msg.contains("LoadCredential=vigil-keystore-passphrase"),
            "{msg}"
        );
        assert!(msg.contains("CREDENTIALS_DIRECTORY"), "{msg}");
    }

    #[test]
    fn empty_too_long_and_non_utf8_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (content, check) in [
            (b"".to_vec(), "empty"),
            (b"\n".to_vec(), "empty"),
            (b"\r\n".to_vec(), "empty"),
            (vec![b'a'; MAX_PASSPHRASE + 1], "larger than"),
            (vec![0xff, 0xfe], "UTF-8"),
        ] {
            let path = file_with(dir.path(), "pass", &content, 0o600);
            let msg = read_passphrase_from(Some(&path), None)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(check), "{msg}");
        }
        let path = file_with(dir.path(), "pass", &vec![b'a'; MAX_PASSPHRASE], 0o600);
        assert_eq!(
            read_passphrase_from(Some(&path), None)
                .unwrap()
                .expose_secret()
                .len(),
            MAX_PASSPHRASE
        );
    }
}
