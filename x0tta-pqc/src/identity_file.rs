//! A [`NodeIdentity`] at rest: the ML-DSA-65 key files of [`MlDsa65Keypair`], plus the
//! Ed25519 and ML-KEM-768 secret keys and the signed record, in one key directory.
//!
//! | file | contents | mode |
//! |---|---|---|
//! | `mldsa65.sk` / `mldsa65.pk` | FIPS 204 expanded secret key (4032 B) / public key (1952 B) | 0600 |
//! | `ed25519.sk` | RFC 8032 secret key (the 32-byte seed) | 0600 |
//! | `mlkem768.sk` | FIPS 203 decapsulation key (2400 B, embeds the public key) | 0600 |
//! | `identity.rec` | the signed [`IdentityRecord`] (public; share it with peers) | 0600 |

use std::io;
use std::path::{Path, PathBuf};

use libp2p_identity::ed25519;

use crate::keyfile::{read_key_file, write_new};
use crate::{
    IdentityError, IdentityRecord, KeyFileError, LoadError, MlDsa65Keypair,
    MlKem768DecapsulationKey, NodeIdentity, SaveError, SpiffeId,
};

/// Loading or creating a [`NodeIdentity`] from its key directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// A key file could not be read or written.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A key file holds an invalid key.
    #[error("key file {} holds an invalid {what} key", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Which key.
        what: &'static str,
    },
    /// The record file is invalid.
    #[error("identity record {}: {error}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        error: IdentityError,
    },
    /// Signing a new record failed.
    #[error("cannot sign the identity record: {0}")]
    Sign(#[from] x0tta_core::SignError),
}

impl From<LoadError> for IdentityFileError {
    fn from(e: LoadError) -> Self {
        Self::KeyFile(e.into())
    }
}

impl From<SaveError> for IdentityFileError {
    fn from(e: SaveError) -> Self {
        Self::KeyFile(e.into())
    }
}

impl NodeIdentity {
    /// File holding the Ed25519 secret key (32-byte seed).
    pub const ED25519_FILE: &'static str = "ed25519.sk";
    /// File holding the ML-KEM-768 decapsulation key (2400 bytes).
    pub const ML_KEM_FILE: &'static str = "mlkem768.sk";
    /// File holding the signed identity record.
    pub const RECORD_FILE: &'static str = "identity.rec";

    /// Loads the identity kept in `dir`, creating whatever is missing: absent keys are
    /// generated (existing ones are never replaced), and the record is re-issued when it is
    /// absent or no longer matches the keys or `spiffe`. Every file is written with mode 0600
    /// into a directory created 0700.
    ///
    /// ```
    /// use x0tta_pqc::NodeIdentity;
    /// # let dir = std::env::temp_dir().join(format!("x0tta-id-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let spiffe = "spiffe://mesh.example/node/a".parse()?;
    /// let first = NodeIdentity::load_or_generate(&dir, &spiffe)?;
    /// let again = NodeIdentity::load_or_generate(&dir, &spiffe)?;
    /// assert_eq!(first.record(), again.record()); // same keys, same record
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_or_generate(
        dir: impl AsRef<Path>,
        spiffe: &SpiffeId,
    ) -> Result<Self, IdentityFileError> {
        let dir = dir.as_ref();
        let ml_dsa = MlDsa65Keypair::load_or_generate(dir)?;
        let ed = load_or_create(dir, Self::ED25519_FILE, 32, || {
            let kp = ed25519::Keypair::generate();
            let seed = zeroize::Zeroizing::new(kp.secret().as_ref().to_vec());
            (kp, seed)
        })?;
        let ed = match ed {
            Loaded::New(kp) => kp,
            Loaded::Bytes(mut bytes, path) => ed25519::SecretKey::try_from_bytes(&mut bytes[..])
                .map(ed25519::Keypair::from)
                .map_err(|_| IdentityFileError::BadKey {
                    path,
                    what: "Ed25519",
                })?,
        };
        let kem = load_or_create(
            dir,
            Self::ML_KEM_FILE,
            MlKem768DecapsulationKey::LEN,
            || {
                let dk = MlKem768DecapsulationKey::generate();
                let bytes = dk.to_bytes();
                (dk, bytes)
            },
        )?;
        let kem =
            match kem {
                Loaded::New(dk) => dk,
                Loaded::Bytes(bytes, path) => MlKem768DecapsulationKey::from_bytes(&bytes)
                    .map_err(|_| IdentityFileError::BadKey {
                        path,
                        what: "ML-KEM-768",
                    })?,
            };

        let rec_path = dir.join(Self::RECORD_FILE);
        let existing = match std::fs::read(&rec_path) {
            Ok(bytes) => Some(IdentityRecord::from_bytes(&bytes).map_err(|error| {
                IdentityFileError::Record {
                    path: rec_path.clone(),
                    error,
                }
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(SaveError::Io {
                    path: rec_path,
                    error,
                }
                .into());
            }
        };
        let matches = |r: &IdentityRecord| {
            r.spiffe_id() == spiffe
                && r.ed25519() == &ed.public()
                && r.ml_dsa() == ml_dsa.public_key()
                && r.ml_kem() == kem.encapsulation_key()
        };
        match existing {
            Some(record) if matches(&record) => Ok(Self::from_parts(ed, ml_dsa, kem, record)),
            _ => {
                let id = Self::from_keys(spiffe.clone(), ed, ml_dsa, kem)?;
                replace_file(&rec_path, id.record().to_bytes())?;
                Ok(id)
            }
        }
    }
}

enum Loaded<T> {
    New(T),
    Bytes(zeroize::Zeroizing<Vec<u8>>, PathBuf),
}

/// Reads the secret key file `name`, or creates it from `make` if absent.
fn load_or_create<T>(
    dir: &Path,
    name: &str,
    len: usize,
    make: impl FnOnce() -> (T, zeroize::Zeroizing<Vec<u8>>),
) -> Result<Loaded<T>, IdentityFileError> {
    let path = dir.join(name);
    match path.symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (key, bytes) = make();
            write_new(&path, &bytes)?;
            Ok(Loaded::New(key))
        }
        _ => Ok(Loaded::Bytes(read_key_file(&path, len, true)?, path)),
    }
}

/// Atomically replaces `path` with `bytes` (mode 0600): a temporary file, then a rename.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let tmp = path.with_extension("rec.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|error| SaveError::Io {
        path: path.to_owned(),
        error,
    })
}
