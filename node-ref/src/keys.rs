//! `keys`: ML-DSA-65 keys and detached signatures for operators working offline (signing
//! policies and proposals on another machine). Files are raw FIPS 204 encodings, so they
//! interoperate with any FIPS 204 implementation; `export` adds PKCS#8 / SPKI PEM copies
//! (RFC 9881) for tools that want those, and `sign` / `verify` read them too. The default
//! context string is empty.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use x0tta_core::Verdict;
use x0tta_pqc::{MlDsa65Keypair, MlDsa65PublicKey, NodeIdentity, SpiffeId};

/// Longest input `sign`/`verify` read, bytes (policies and proposals are small).
const MAX_INPUT: u64 = 64 << 20;

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_INPUT {
        bail!(
            "{} is {len} bytes; the limit is {MAX_INPUT}",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The key directory `key` names: itself, or the directory of a key file. A path that does
/// not exist is taken as the directory, so the error names the file that is missing in it.
fn key_dir(key: &Path) -> PathBuf {
    if !key.is_file() {
        key.to_path_buf()
    } else {
        key.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

pub(crate) fn generate(out: &Path, json: bool) -> Result<()> {
    let keys = MlDsa65Keypair::generate();
    keys.save(out)
        .with_context(|| format!("saving keys to {}", out.display()))?;
    let public = out.join(MlDsa65Keypair::PUBLIC_KEY_FILE);
    let secret = out.join(MlDsa65Keypair::SECRET_KEY_FILE);
    if json {
        println!(
            "{}",
            serde_json::json!({ "public": public, "secret": secret, "public_bytes": MlDsa65PublicKey::LEN })
        );
        return Ok(());
    }
    println!(
        "wrote {} (public, {} bytes)",
        public.display(),
        MlDsa65PublicKey::LEN
    );
    println!("wrote {} (secret, 0600)", secret.display());
    Ok(())
}

pub(crate) fn generate_identity(out: &Path, spiffe: &str, json: bool) -> Result<()> {
    let spiffe: SpiffeId = spiffe.parse()?;
    let fresh = !out.join(MlDsa65Keypair::SECRET_KEY_FILE).exists();
    let id = NodeIdentity::load_or_generate(out, &spiffe)
        .with_context(|| format!("writing the identity in {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dir": out,
                "new": fresh,
                "node_id": id.node_id().to_string(),
                "spiffe_id": id.spiffe_id().to_string(),
                "record": out.join(NodeIdentity::RECORD_FILE),
                "record_bytes": id.record().to_bytes().len(),
            })
        );
        return Ok(());
    }
    println!(
        "{} identity in {}: files mldsa65.sk mldsa65.pk ed25519.sk mlkem768.sk (0600), {} (public record, {} bytes)",
        if fresh { "new" } else { "existing keys," },
        out.display(),
        NodeIdentity::RECORD_FILE,
        id.record().to_bytes().len()
    );
    println!("node id (libp2p PeerId): {}", id.node_id());
    println!("spiffe id: {}", id.spiffe_id());
    Ok(())
}

/// File names `export` writes beside the raw keys.
pub(crate) const SECRET_PEM: &str = "mldsa65.sk.pem";
pub(crate) const PUBLIC_PEM: &str = "mldsa65.pk.pem";

fn is_pem(bytes: &[u8]) -> bool {
    bytes.starts_with(b"-----BEGIN ")
}

/// Writes the key pair of `key` (a key directory) as PKCS#8 and SPKI PEM files into `out`
/// (default: the key directory): the secret one 0600, neither ever overwritten.
pub(crate) fn export(key: &Path, out: Option<&Path>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = key_dir(key);
    let keys = MlDsa65Keypair::load(&dir)
        .with_context(|| format!("loading the key pair in {}", dir.display()))?;
    let out = out.unwrap_or(&dir);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, mode: u32, text: &str| -> Result<PathBuf> {
        let path = out.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| {
                format!(
                    "creating {} (existing files are never replaced)",
                    path.display()
                )
            })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let secret = write(SECRET_PEM, 0o600, &keys.to_pkcs8_pem()?)?;
    let public = write(PUBLIC_PEM, 0o644, &keys.public_key().to_spki_pem()?)?;
    println!(
        "wrote {} (PKCS#8, RFC 9881 expandedKey + public key, 0600)",
        secret.display()
    );
    println!("wrote {} (SPKI)", public.display());
    Ok(())
}

/// The key pair `sign` uses: a key directory / its `mldsa65.sk`, or a PKCS#8 PEM file.
fn load_signing_key(key: &Path) -> Result<MlDsa65Keypair> {
    if key.is_file() {
        let bytes = read_bounded(key)?;
        if is_pem(&bytes) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key)?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by group or others (mode {:o}); chmod 600 it",
                    key.display(),
                    mode & 0o777
                );
            }
            let pem = std::str::from_utf8(&bytes)
                .with_context(|| format!("{} is not PEM text", key.display()))?;
            return MlDsa65Keypair::from_pkcs8_pem(pem)
                .with_context(|| format!("{} is not an ML-DSA-65 PKCS#8 key", key.display()));
        }
    }
    let dir = key_dir(key);
    MlDsa65Keypair::load(&dir).with_context(|| format!("loading the key pair in {}", dir.display()))
}

pub(crate) fn sign(key: &Path, input: &Path, out: &Path, context: &str) -> Result<()> {
    let keys = load_signing_key(key)?;
    let msg = read_bounded(input)?;
    let sig = keys.sign(context.as_bytes(), &msg)?;
    std::fs::write(out, &sig).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} ({} bytes) -> {} ({} bytes, ML-DSA-65, context {:?})",
        input.display(),
        msg.len(),
        out.display(),
        sig.len(),
        context
    );
    Ok(())
}

pub(crate) fn verify(public: &Path, input: &Path, sig: &Path, context: &str) -> Result<()> {
    let pk_bytes = read_bounded(public)?;
    let pk = if is_pem(&pk_bytes) {
        std::str::from_utf8(&pk_bytes)
            .map_err(anyhow::Error::from)
            .and_then(|pem| MlDsa65PublicKey::from_spki_pem(pem).map_err(anyhow::Error::from))
    } else if pk_bytes.len() == MlDsa65PublicKey::LEN {
        MlDsa65PublicKey::from_bytes(&pk_bytes).map_err(anyhow::Error::from)
    } else {
        MlDsa65PublicKey::from_spki_der(&pk_bytes).map_err(anyhow::Error::from)
    }
    .with_context(|| {
        format!(
            "{} is not an ML-DSA-65 public key (raw, SPKI DER or SPKI PEM)",
            public.display()
        )
    })?;
    let msg = read_bounded(input)?;
    let sig_bytes = read_bounded(sig)?;
    match pk.verify(context.as_bytes(), &msg, &sig_bytes) {
        Verdict::Valid => {
            println!(
                "valid: {} is signed by this key (context {:?})",
                input.display(),
                context
            );
            Ok(())
        }
        Verdict::Reject(why) => bail!(
            "INVALID signature on {} ({why:?}, context {:?})",
            input.display(),
            context
        ),
    }
}
