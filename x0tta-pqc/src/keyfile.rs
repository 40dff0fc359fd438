//! ML-DSA-65 key pairs at rest: two raw files in a key directory, owner-only.
//!
//! Files are created with mode 0600 at `open` time (never widened then narrowed), are never
//! overwritten, and a secret key file that group or others could read is refused on load.
//! This module must not log key bytes; errors name paths and lengths only. The format is the
//! same under every [`Backend`](crate::Backend): a loaded key pair signs with the default one
//! (change it with [`MlDsa65Keypair::with_backend`]).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{KeyError, MlDsa65Keypair, MlDsa65PublicKey};

/// Loading a key pair from its directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A key file does not exist.
    #[error("key file {} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A key file has the wrong size for its key.
    #[error("key file {} is {actual} bytes long, expected {expected}", path.display())]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Its size.
        actual: u64,
        /// The key's size.
        expected: usize,
    },
    /// The secret key file is accessible to group or others.
    #[error(
        "secret key file {} has mode {mode:04o}; it must be accessible by its owner only (chmod 600)",
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key path is not a regular file.
    #[error("key file {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The secret key file does not hold a valid FIPS 204 secret key.
    #[error("secret key file {} is malformed: {what}", path.display())]
    MalformedSecretKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// The two files do not form a key pair.
    #[error("key files in {} do not form a key pair: the secret key does not match the public key", dir.display())]
    Mismatch {
        /// The key directory.
        dir: PathBuf,
    },
    /// Reading a key file failed.
    #[error("cannot read key file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
}

/// Saving a key pair to its directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// A key file is already there; keys are never overwritten.
    #[error("key file {} already exists; refusing to overwrite a key", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Creating the directory or writing a file failed.
    #[error("cannot write {}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
}

/// [`MlDsa65Keypair::load_or_generate`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The key files exist (at least one) but cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// There were no key files, and saving the new key pair failed.
    #[error(transparent)]
    Save(#[from] SaveError),
}

impl MlDsa65Keypair {
    /// Name of the public key file in a key directory: the raw 1952-byte FIPS 204 encoding.
    pub const PUBLIC_KEY_FILE: &'static str = "mldsa65.pk";
    /// Name of the secret key file in a key directory: the raw 4032-byte FIPS 204 expanded
    /// encoding (`skEncode`).
    ///
    /// Both backends load this form, whichever one generated the key. The 32-byte seed ξ that
    /// `ml-dsa` prefers is not stored: PQClean cannot use it and cannot produce it.
    pub const SECRET_KEY_FILE: &'static str = "mldsa65.sk";

    /// Writes [`Self::SECRET_KEY_FILE`] and [`Self::PUBLIC_KEY_FILE`] into `dir`, both created
    /// with mode 0600, and syncs them.
    ///
    /// Creates `dir` (mode 0700) if it is missing. Refuses with [`SaveError::Exists`] if either
    /// file exists: a lost secret key is a lost identity, so replacing one is a deliberate act
    /// (delete the files first). A file left half-written by a failed write is removed.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), SaveError> {
        let dir = dir.as_ref();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| SaveError::Io {
                path: dir.to_owned(),
                error,
            })?;
        let sk_path = dir.join(Self::SECRET_KEY_FILE);
        let pk_path = dir.join(Self::PUBLIC_KEY_FILE);
        // Check both first so a refusal leaves the directory as it was.
        for path in [&sk_path, &pk_path] {
            if path.symlink_metadata().is_ok() {
                return Err(SaveError::Exists { path: path.clone() });
            }
        }
        write_new(&sk_path, self.secret_bytes())?;
        write_new(&pk_path, self.public_key().as_bytes())?;
        // Make the new directory entries durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|error| SaveError::Io {
                path: dir.to_owned(),
                error,
            })
    }

    /// Reads the key pair [`Self::save`] wrote into `dir`.
    ///
    /// Refuses a secret key file with any group or other permission bit
    /// ([`LoadError::Permissions`]), files of the wrong size, and a pair whose halves do not
    /// match ([`LoadError::Mismatch`], checked by signing and verifying a probe message).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let sk_path = dir.join(Self::SECRET_KEY_FILE);
        let pk_path = dir.join(Self::PUBLIC_KEY_FILE);
        // The secret key first: an exposed secret key is the most important thing to report.
        let secret = read_key_file(&sk_path, Self::SECRET_KEY_LEN, true)?;
        let public = read_key_file(&pk_path, MlDsa65PublicKey::LEN, false)?;
        let public = MlDsa65PublicKey::from_bytes(&public).map_err(|_| LoadError::WrongLength {
            path: pk_path,
            actual: public.len() as u64,
            expected: MlDsa65PublicKey::LEN,
        })?;
        Self::from_parts(public, secret).map_err(|e| match e {
            KeyError::WrongLength {
                actual, expected, ..
            } => LoadError::WrongLength {
                path: sk_path,
                actual: actual as u64,
                expected,
            },
            KeyError::MalformedSecretKey(what) => LoadError::MalformedSecretKey {
                path: sk_path,
                what,
            },
            KeyError::Mismatch => LoadError::Mismatch {
                dir: dir.to_owned(),
            },
        })
    }

    /// Loads the key pair in `dir`, or, if neither key file exists, generates one and saves it
    /// there.
    ///
    /// If only one of the two files exists, this fails ([`LoadError::Missing`]) instead of
    /// replacing it. Two processes starting on the same empty directory at once may see one
    /// fail with [`SaveError::Exists`]; retrying then loads the winner's key.
    pub fn load_or_generate(dir: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let dir = dir.as_ref();
        let absent = |name: &str| {
            matches!(
                dir.join(name).symlink_metadata(),
                Err(e) if e.kind() == io::ErrorKind::NotFound
            )
        };
        if absent(Self::SECRET_KEY_FILE) && absent(Self::PUBLIC_KEY_FILE) {
            let pair = Self::generate();
            pair.save(dir)?;
            Ok(pair)
        } else {
            Ok(Self::load(dir)?)
        }
    }
}

/// Creates `path` (mode 0600, must not exist) holding `bytes`, synced to disk.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let io_err = |error| SaveError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                SaveError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io_err(e)
            }
        })?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        // Best effort: a truncated key file would only fail to load later.
        let _ = std::fs::remove_file(path);
        return Err(io_err(e));
    }
    Ok(())
}

/// Reads a key file of exactly `expected` bytes into a buffer wiped on drop.
pub(crate) fn read_key_file(
    path: &Path,
    expected: usize,
    secret: bool,
) -> Result<Zeroizing<Vec<u8>>, LoadError> {
    let io_err = |error| LoadError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            LoadError::Missing {
                path: path.to_owned(),
            }
        } else {
            io_err(e)
        }
    })?;
    // Checks go on the opened file, not the path, so a swap between check and read is moot.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(LoadError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let wrong_length = |actual| LoadError::WrongLength {
        path: path.to_owned(),
        actual,
        expected,
    };
    if meta.len() != expected as u64 {
        return Err(wrong_length(meta.len()));
    }
    // Sized up front so the buffer never reallocates and leaves an unwiped copy behind.
    let mut buf = Zeroizing::new(vec![0u8; expected]);
    file.read_exact(&mut buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            wrong_length(file_len(path))
        } else {
            io_err(e)
        }
    })?;
    // The file may have grown since the size check.
    let mut extra = [0u8; 1];
    if file.read(&mut extra).map_err(io_err)? != 0 {
        return Err(wrong_length(file_len(path)));
    }
    Ok(buf)
}

/// Current size of `path`, for an error message only.
fn file_len(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}
