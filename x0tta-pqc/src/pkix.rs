//! ML-DSA-65 keys as PKCS#8 and SPKI (RFC 5958, RFC 5280, RFC 9881), DER or PEM, for tools
//! that speak those formats (OpenSSL 3.5+, BoringSSL, Go's crypto/x509, RustCrypto).
//!
//! Written: a `OneAsymmetricKey` v2 holding the `expandedKey` form of RFC 9881 (the FIPS 204
//! secret key, 4,032 bytes) **and the public key**, so the file alone rebuilds the key pair
//! under any backend. Read: the `expandedKey`, `seed` and `both` forms. A seed (32 bytes, ξ)
//! needs the `rustcrypto` feature — PQClean cannot derive keys from one — and so does an
//! `expandedKey` without the public key (it is recomputed from `s1`, `s2`). Every key read is
//! checked like [`MlDsa65Keypair::from_bytes`]: ranges, then a sign-and-verify probe.
//!
//! ```
//! use x0tta_pqc::MlDsa65Keypair;
//!
//! let keys = MlDsa65Keypair::generate();
//! let pem = keys.to_pkcs8_pem()?;
//! assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
//! let back = MlDsa65Keypair::from_pkcs8_pem(&pem)?;
//! assert_eq!(back.public_key(), keys.public_key());
//!
//! let spki = keys.public_key().to_spki_pem()?;
//! assert_eq!(&x0tta_pqc::MlDsa65PublicKey::from_spki_pem(&spki)?, keys.public_key());
//! # Ok::<(), x0tta_pqc::Pkcs8Error>(())
//! ```

use pkcs8::PrivateKeyInfoRef;
use pkcs8::der::asn1::{AnyRef, BitStringRef, OctetStringRef};
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{self, Decode, Document, Encode, SecretDocument, Tag, TagNumber, Tagged};
use pkcs8::spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::{KeyError, MlDsa65Keypair, MlDsa65PublicKey};

/// `id-ml-dsa-65` (NIST CSOR, RFC 9881).
pub const ID_ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
const SEED_LEN: usize = 32;

/// A PKCS#8 or SPKI document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs8Error {
    /// Not valid DER / PEM, or not the expected structure.
    #[error("malformed PKCS#8 / SPKI document: {0}")]
    Malformed(String),
    /// The PEM label is not the one this kind of key uses.
    #[error("PEM label {found:?}, expected {expected:?}")]
    Label {
        /// Label found.
        found: String,
        /// Label expected.
        expected: &'static str,
    },
    /// The algorithm is not ML-DSA-65.
    #[error("algorithm {0} is not ML-DSA-65 ({ID_ML_DSA_65})")]
    Algorithm(String),
    /// A seed-form key in a build without the `rustcrypto` feature.
    #[error(
        "this ML-DSA-65 key is in seed form; deriving the key pair needs x0tta-pqc's \
         `rustcrypto` feature (PQClean has no seeded key generation)"
    )]
    SeedNeedsRustCrypto,
    /// An `expandedKey` without the public key in a build without the `rustcrypto` feature.
    #[error(
        "this ML-DSA-65 key carries no public key; recomputing it needs x0tta-pqc's \
         `rustcrypto` feature"
    )]
    PublicKeyNeeded,
    /// The `both` form's seed does not derive its `expandedKey`.
    #[error("the seed and the expanded key of this ML-DSA-65 key disagree")]
    SeedMismatch,
    /// The key bytes are refused.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<der::Error> for Pkcs8Error {
    fn from(e: der::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

impl From<pkcs8::Error> for Pkcs8Error {
    fn from(e: pkcs8::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

fn algorithm() -> AlgorithmIdentifierRef<'static> {
    AlgorithmIdentifierRef {
        oid: ID_ML_DSA_65,
        parameters: None,
    }
}

fn check_algorithm(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), Pkcs8Error> {
    if alg.oid != ID_ML_DSA_65 {
        return Err(Pkcs8Error::Algorithm(alg.oid.to_string()));
    }
    if alg.parameters.is_some() {
        return Err(Pkcs8Error::Malformed(
            "ML-DSA-65 algorithm identifiers have no parameters".into(),
        ));
    }
    Ok(())
}

impl MlDsa65Keypair {
    /// PKCS#8 DER: `OneAsymmetricKey` v2 with the RFC 9881 `expandedKey` and the public key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Pkcs8Error> {
        Ok(Zeroizing::new(self.pkcs8_document()?.as_bytes().to_vec()))
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), LF line endings.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Pkcs8Error> {
        Ok(self
            .pkcs8_document()?
            .to_pem(PRIVATE_LABEL, LineEnding::LF)?)
    }

    fn pkcs8_document(&self) -> Result<SecretDocument, Pkcs8Error> {
        let expanded = Zeroizing::new(OctetStringRef::new(self.secret_bytes())?.to_der()?);
        let mut info = PrivateKeyInfoRef::new(algorithm(), OctetStringRef::new(&expanded)?);
        info.public_key = Some(BitStringRef::new(0, self.public_key().as_bytes())?);
        Ok(SecretDocument::encode_msg(&info)?)
    }

    /// Reads a PKCS#8 DER ML-DSA-65 key in any RFC 9881 form (see the module docs).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Pkcs8Error> {
        let info = PrivateKeyInfoRef::from_der(der)?;
        check_algorithm(&info.algorithm)?;
        let public = info
            .public_key
            .map(|bits| {
                bits.as_bytes().ok_or_else(|| {
                    Pkcs8Error::Malformed("public key bit string has unused bits".into())
                })
            })
            .transpose()?;
        let choice = AnyRef::from_der(info.private_key.as_bytes())?;
        let (seed, expanded) = match choice.tag() {
            Tag::ContextSpecific {
                constructed: false,
                number: TagNumber(0),
            } => (Some(choice.value()), None),
            Tag::OctetString => (None, Some(choice.value())),
            Tag::Sequence => {
                let mut reader = der::SliceReader::new(choice.value())?;
                let seed = AnyRef::decode(&mut reader)?;
                let expanded = AnyRef::decode(&mut reader)?;
                der::Reader::finish(reader)?;
                let seed_tag = Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber(0),
                };
                if seed.tag() != seed_tag || expanded.tag() != Tag::OctetString {
                    return Err(Pkcs8Error::Malformed(
                        "the `both` form is SEQUENCE { [0] seed, OCTET STRING expandedKey }".into(),
                    ));
                }
                (Some(seed.value()), Some(expanded.value()))
            }
            other => {
                return Err(Pkcs8Error::Malformed(format!(
                    "ML-DSA-65 private key of tag {other}: expected seed, expandedKey or both"
                )));
            }
        };
        if let Some(seed) = seed
            && seed.len() != SEED_LEN
        {
            return Err(Pkcs8Error::Malformed(format!(
                "ML-DSA-65 seed is {} bytes, expected {SEED_LEN}",
                seed.len()
            )));
        }
        let keys = match (seed, expanded) {
            (Some(seed), expanded) => {
                let keys = from_seed(seed)?;
                if expanded.is_some_and(|e| e != keys.secret_bytes()) {
                    return Err(Pkcs8Error::SeedMismatch);
                }
                keys
            }
            (None, Some(expanded)) => match public {
                Some(public) => Self::from_bytes(public, expanded)?,
                None => from_expanded_alone(expanded)?,
            },
            (None, None) => unreachable!("every tag above yields a seed or an expanded key"),
        };
        if public.is_some_and(|p| p != keys.public_key().as_bytes()) {
            return Err(Pkcs8Error::Key(KeyError::Mismatch));
        }
        Ok(keys)
    }

    /// Reads a PKCS#8 PEM ML-DSA-65 key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Pkcs8Error> {
        let (label, doc) = SecretDocument::from_pem(pem)?;
        check_label(label, PRIVATE_LABEL)?;
        Self::from_pkcs8_der(doc.as_bytes())
    }
}

#[cfg(feature = "rustcrypto")]
fn from_seed(seed: &[u8]) -> Result<MlDsa65Keypair, Pkcs8Error> {
    let seed: &[u8; SEED_LEN] = seed
        .try_into()
        .map_err(|_| Pkcs8Error::Malformed("seed length".into()))?;
    Ok(MlDsa65Keypair::from_seed(seed))
}

#[cfg(not(feature = "rustcrypto"))]
fn from_seed(_seed: &[u8]) -> Result<MlDsa65Keypair, Pkcs8Error> {
    Err(Pkcs8Error::SeedNeedsRustCrypto)
}

#[cfg(feature = "rustcrypto")]
fn from_expanded_alone(expanded: &[u8]) -> Result<MlDsa65Keypair, Pkcs8Error> {
    Ok(MlDsa65Keypair::from_secret_key(expanded)?)
}

#[cfg(not(feature = "rustcrypto"))]
fn from_expanded_alone(_expanded: &[u8]) -> Result<MlDsa65Keypair, Pkcs8Error> {
    Err(Pkcs8Error::PublicKeyNeeded)
}

fn check_label(found: &str, expected: &'static str) -> Result<(), Pkcs8Error> {
    if found == expected {
        Ok(())
    } else {
        Err(Pkcs8Error::Label {
            found: found.to_owned(),
            expected,
        })
    }
}

impl MlDsa65PublicKey {
    /// SPKI DER (`SubjectPublicKeyInfo`, RFC 9881).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Pkcs8Error> {
        Ok(self.spki_document()?.as_bytes().to_vec())
    }

    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`), LF line endings.
    pub fn to_spki_pem(&self) -> Result<String, Pkcs8Error> {
        Ok(self.spki_document()?.to_pem(PUBLIC_LABEL, LineEnding::LF)?)
    }

    fn spki_document(&self) -> Result<Document, Pkcs8Error> {
        let info = SubjectPublicKeyInfoRef {
            algorithm: algorithm(),
            subject_public_key: BitStringRef::new(0, self.as_bytes())?,
        };
        Ok(Document::encode_msg(&info)?)
    }

    /// Reads an SPKI DER ML-DSA-65 public key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Pkcs8Error> {
        let info = SubjectPublicKeyInfoRef::from_der(der)?;
        check_algorithm(&info.algorithm)?;
        let bytes = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Pkcs8Error::Malformed("public key bit string has unused bits".into()))?;
        Ok(Self::from_bytes(bytes)?)
    }

    /// Reads an SPKI PEM ML-DSA-65 public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<Self, Pkcs8Error> {
        let (label, doc) = Document::from_pem(pem)?;
        check_label(label, PUBLIC_LABEL)?;
        Self::from_spki_der(doc.as_bytes())
    }
}

/// Decodes `bytes` as PKCS#8 and as SPKI, for fuzzing and property tests: never panics.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    let private = MlDsa65Keypair::from_pkcs8_der(bytes).is_ok();
    let public = MlDsa65PublicKey::from_spki_der(bytes).is_ok();
    private || public
}
