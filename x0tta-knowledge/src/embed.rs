//! The lexical fallback embedder: used when no language model is configured, and named as
//! such so nobody mistakes it for semantic search.

use async_trait::async_trait;
use x0tta_core::{EmbedError, Embedder};

/// Vector length of [`LexicalEmbedder`] (the seed's MiniLM-L6 width, so the two are
/// interchangeable in an index layout).
pub const LEXICAL_DIMENSIONS: usize = 384;

/// Feature hashing of words and character trigrams into 384 dimensions, L2-normalised.
///
/// It captures shared vocabulary and spelling variants ("restart", "restarted"), not meaning:
/// "processor load" and "high cpu" share nothing here. A real model
/// (`MiniLmEmbedder`, feature `minilm`) replaces it where configured.
///
/// ```
/// use x0tta_core::Embedder;
/// use x0tta_knowledge::LexicalEmbedder;
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let e = LexicalEmbedder;
/// let a = e.embed("service web restarted").await?;
/// let b = e.embed("restart the web service").await?;
/// let c = e.embed("disk full on /var").await?;
/// let cos = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
/// assert!(cos(&a, &b) > cos(&a, &c));
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LexicalEmbedder;

/// FNV-1a, a stable hash (the vectors are persisted, so the hash must never change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn add(v: &mut [f32], feature: &[u8], weight: f32) {
    let h = fnv1a(feature);
    let i = (h % LEXICAL_DIMENSIONS as u64) as usize;
    let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
    v[i] += sign * weight;
}

impl LexicalEmbedder {
    /// The embedding of `text` (synchronous; the trait method wraps this).
    pub fn embed_now(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; LEXICAL_DIMENSIONS];
        for word in text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
        {
            add(&mut v, word.as_bytes(), 1.0);
            let padded: Vec<char> = format!("^{word}$").chars().collect();
            for tri in padded.windows(3) {
                let s: String = tri.iter().collect();
                add(&mut v, s.as_bytes(), 0.5);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[async_trait]
impl Embedder for LexicalEmbedder {
    fn dimensions(&self) -> usize {
        LEXICAL_DIMENSIONS
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed_now(text))
    }
}
