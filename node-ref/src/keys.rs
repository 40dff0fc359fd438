//! `keys`: ML-DSA-65 keys and detached signatures for operators working offline (signing
//! policies and proposals on another machine). Files are raw FIPS 204 encodings, so they
//! interoperate with any FIPS 204 implementation; the default context string is empty.

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

fn key_dir(key: &Path) -> PathBuf {
    if key.is_dir() {
        key.to_path_buf()
    } else {
        key.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

pub(crate) fn generate(out: &Path) -> Result<()> {
    let keys = MlDsa65Keypair::generate();
    keys.save(out)
        .with_context(|| format!("saving keys to {}", out.display()))?;
    println!(
        "wrote {}/{} (public, {} bytes)",
        out.display(),
        MlDsa65Keypair::PUBLIC_KEY_FILE,
        MlDsa65PublicKey::LEN
    );
    println!(
        "wrote {}/{} (secret, 0600)",
        out.display(),
        MlDsa65Keypair::SECRET_KEY_FILE
    );
    Ok(())
}

pub(crate) fn generate_identity(out: &Path, spiffe: &str) -> Result<()> {
    let spiffe: SpiffeId = spiffe.parse()?;
    let fresh = !out.join(MlDsa65Keypair::SECRET_KEY_FILE).exists();
    let id = NodeIdentity::load_or_generate(out, &spiffe)
        .with_context(|| format!("writing the identity in {}", out.display()))?;
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

pub(crate) fn sign(key: &Path, input: &Path, out: &Path, context: &str) -> Result<()> {
    let dir = key_dir(key);
    let keys = MlDsa65Keypair::load(&dir)
        .with_context(|| format!("loading the key pair in {}", dir.display()))?;
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
    let pk = MlDsa65PublicKey::from_bytes(&pk_bytes)
        .with_context(|| format!("{} is not an ML-DSA-65 public key", public.display()))?;
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
