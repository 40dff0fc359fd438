//! Key pairs at rest: raw files, 0600 permissions, typed load errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use x0tta_core::{NodeId, Signer, Verifier};
use x0tta_pqc::{
    Backend, KeyFileError, LoadError, MlDsa65Keypair, MlDsa65PublicKey, MlDsa65Signer, SaveError,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "x0tta-pqc-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn sk(&self) -> PathBuf {
        self.0.join(MlDsa65Keypair::SECRET_KEY_FILE)
    }

    fn pk(&self) -> PathBuf {
        self.0.join(MlDsa65Keypair::PUBLIC_KEY_FILE)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn save_load_round_trip() {
    let dir = TempDir::new();
    let keys = MlDsa65Keypair::generate();
    let public = keys.public_key().clone();
    keys.save(dir.path()).unwrap();

    assert_eq!(fs::read(dir.pk()).unwrap(), public.as_bytes());
    assert_eq!(fs::read(dir.pk()).unwrap().len(), MlDsa65PublicKey::LEN);
    assert_eq!(
        fs::read(dir.sk()).unwrap().len(),
        MlDsa65Keypair::SECRET_KEY_LEN
    );

    let loaded = MlDsa65Keypair::load(dir.path()).unwrap();
    assert_eq!(loaded.public_key(), &public);
    // The loaded secret key signs for the saved public key.
    let signer = MlDsa65Signer::new(NodeId::new("n").unwrap(), loaded);
    let sig = signer.sign(b"ctx", b"msg").unwrap();
    let ring = x0tta_pqc::KeyRing::new().with(NodeId::new("n").unwrap(), public);
    assert!(ring.verify(b"ctx", b"msg", &sig).is_valid());
}

#[test]
fn key_files_are_created_0600() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    assert_eq!(mode(&dir.sk()), 0o600);
    assert_eq!(mode(&dir.pk()), 0o600);
}

#[test]
fn save_creates_a_missing_directory_owner_only() {
    let dir = TempDir::new();
    let keys_dir = dir.path().join("a/keys");
    MlDsa65Keypair::generate().save(&keys_dir).unwrap();
    assert_eq!(mode(&keys_dir), 0o700);
    assert!(MlDsa65Keypair::load(&keys_dir).is_ok());
}

#[test]
fn save_never_overwrites() {
    let dir = TempDir::new();
    let first = MlDsa65Keypair::generate();
    first.save(dir.path()).unwrap();
    let err = MlDsa65Keypair::generate().save(dir.path()).unwrap_err();
    assert!(matches!(err, SaveError::Exists { .. }), "{err}");
    assert_eq!(
        MlDsa65Keypair::load(dir.path()).unwrap().public_key(),
        first.public_key()
    );

    // Only the public key present: refused before anything is written.
    fs::remove_file(dir.sk()).unwrap();
    let err = MlDsa65Keypair::generate().save(dir.path()).unwrap_err();
    assert!(
        matches!(&err, SaveError::Exists { path } if *path == dir.pk()),
        "{err}"
    );
    assert!(!dir.sk().exists());
}

#[test]
fn group_or_world_readable_secret_key_is_refused() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o602] {
        fs::set_permissions(dir.sk(), Permissions::from_mode(bad)).unwrap();
        let err = MlDsa65Keypair::load(dir.path()).unwrap_err();
        match &err {
            LoadError::Permissions { path, mode } => {
                assert_eq!(path, &dir.sk());
                assert_eq!(*mode, bad);
            }
            other => panic!("mode {bad:o}: expected Permissions, got {other:?}"),
        }
        assert!(err.to_string().contains("mldsa65.sk"), "{err}");
    }
    // Owner-only variants are fine; a world-readable public key is fine.
    fs::set_permissions(dir.pk(), Permissions::from_mode(0o644)).unwrap();
    for ok in [0o600, 0o400] {
        fs::set_permissions(dir.sk(), Permissions::from_mode(ok)).unwrap();
        MlDsa65Keypair::load(dir.path()).unwrap();
    }
}

#[test]
fn a_0644_secret_key_written_by_hand_is_refused() {
    let dir = TempDir::new();
    let keys = MlDsa65Keypair::generate();
    keys.save(dir.path()).unwrap();
    let sk = fs::read(dir.sk()).unwrap();
    fs::remove_file(dir.sk()).unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dir.sk())
        .unwrap();
    f.write_all(&sk).unwrap();
    drop(f);
    // Whatever the umask did, make sure the file really is 0644.
    fs::set_permissions(dir.sk(), Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        MlDsa65Keypair::load(dir.path()),
        Err(LoadError::Permissions { mode: 0o644, .. })
    ));
}

#[test]
fn missing_files_are_reported_by_path() {
    let dir = TempDir::new();
    let err = MlDsa65Keypair::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Missing { path } if *path == dir.sk()),
        "{err}"
    );

    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    fs::remove_file(dir.pk()).unwrap();
    let err = MlDsa65Keypair::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Missing { path } if *path == dir.pk()),
        "{err}"
    );
    assert!(err.to_string().contains("mldsa65.pk"), "{err}");
}

#[test]
fn wrong_lengths_are_reported() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    let sk = fs::read(dir.sk()).unwrap();
    let pk = fs::read(dir.pk()).unwrap();

    fs::write(dir.sk(), &sk[..100]).unwrap();
    match MlDsa65Keypair::load(dir.path()).unwrap_err() {
        LoadError::WrongLength {
            path,
            actual,
            expected,
        } => {
            assert_eq!(
                (path, actual, expected),
                (dir.sk(), 100, MlDsa65Keypair::SECRET_KEY_LEN)
            );
        }
        other => panic!("{other:?}"),
    }
    fs::write(dir.sk(), &sk).unwrap();

    fs::write(dir.pk(), [&pk[..], b"\n"].concat()).unwrap();
    match MlDsa65Keypair::load(dir.path()).unwrap_err() {
        LoadError::WrongLength {
            path,
            actual,
            expected,
        } => {
            assert_eq!(
                (path, actual, expected),
                (dir.pk(), 1953, MlDsa65PublicKey::LEN)
            );
        }
        other => panic!("{other:?}"),
    }
    fs::write(dir.pk(), b"").unwrap();
    assert!(matches!(
        MlDsa65Keypair::load(dir.path()),
        Err(LoadError::WrongLength { actual: 0, .. })
    ));
}

#[test]
fn mismatched_halves_are_refused() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    fs::write(dir.pk(), MlDsa65Keypair::generate().public_key().as_bytes()).unwrap();
    let err = MlDsa65Keypair::load(dir.path()).unwrap_err();
    assert!(matches!(err, LoadError::Mismatch { .. }), "{err}");
}

#[test]
fn a_directory_in_place_of_a_key_file_is_refused() {
    let dir = TempDir::new();
    fs::create_dir(dir.sk()).unwrap();
    fs::set_permissions(dir.sk(), Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(
        MlDsa65Keypair::load(dir.path()),
        Err(LoadError::NotAFile { .. })
    ));
}

#[test]
fn load_or_generate_creates_once_then_loads() {
    let dir = TempDir::new();
    let keys_dir = dir.path().join("keys");
    let first = MlDsa65Keypair::load_or_generate(&keys_dir).unwrap();
    assert_eq!(mode(&keys_dir.join(MlDsa65Keypair::SECRET_KEY_FILE)), 0o600);
    let second = MlDsa65Keypair::load_or_generate(&keys_dir).unwrap();
    assert_eq!(first.public_key(), second.public_key());
}

#[test]
fn load_or_generate_does_not_replace_half_a_key_pair() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    let pk = fs::read(dir.pk()).unwrap();
    fs::remove_file(dir.sk()).unwrap();
    let err = MlDsa65Keypair::load_or_generate(dir.path()).unwrap_err();
    assert!(
        matches!(&err, KeyFileError::Load(LoadError::Missing { path }) if *path == dir.sk()),
        "{err}"
    );
    assert_eq!(fs::read(dir.pk()).unwrap(), pk);

    // An insecure secret key is reported, not regenerated.
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    fs::set_permissions(dir.sk(), Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        MlDsa65Keypair::load_or_generate(dir.path()),
        Err(KeyFileError::Load(LoadError::Permissions { .. }))
    ));
}

#[test]
fn secret_key_is_not_in_debug_or_errors() {
    let dir = TempDir::new();
    let keys = MlDsa65Keypair::generate();
    keys.save(dir.path()).unwrap();
    let sk = fs::read(dir.sk()).unwrap();
    let hex: String = sk[64..80].iter().map(|b| format!("{b:02x}")).collect();
    let shown = format!("{keys:?}");
    assert!(!shown.contains(&hex), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn malformed_secret_key_is_refused() {
    let dir = TempDir::new();
    MlDsa65Keypair::generate().save(dir.path()).unwrap();
    let mut sk = fs::read(dir.sk()).unwrap();
    // First byte of s1 (after rho, K and tr): nibble 0xf encodes a coefficient of 4 - 15.
    sk[128] = 0xff;
    fs::write(dir.sk(), &sk).unwrap();
    let err = MlDsa65Keypair::load(dir.path()).unwrap_err();
    assert!(matches!(err, LoadError::MalformedSecretKey { .. }), "{err}");
}

#[test]
fn key_files_are_shared_by_every_backend() {
    for &maker in Backend::ALL {
        let dir = TempDir::new();
        let keys = MlDsa65Keypair::generate_with(maker);
        keys.save(dir.path()).unwrap();
        assert_eq!(
            fs::read(dir.sk()).unwrap().len(),
            MlDsa65Keypair::SECRET_KEY_LEN,
            "{maker}"
        );
        for &user in Backend::ALL {
            let loaded = MlDsa65Keypair::load(dir.path()).unwrap().with_backend(user);
            assert_eq!(loaded.public_key(), keys.public_key());
            let sig = loaded.sign(b"ctx", b"msg").unwrap();
            for &verifier in Backend::ALL {
                assert!(
                    keys.public_key()
                        .verify_with(verifier, b"ctx", b"msg", &sig)
                        .is_valid(),
                    "made by {maker}, signed by {user}, verified by {verifier}"
                );
            }
        }
    }
}
