//! CARv1 export and import, so the knowledge base can be pinned on any IPFS node and moved
//! between nodes. Every imported block is checked against its CID before it is used.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use x0tta_core::{ContentId, Incident, KnowledgeError, KnowledgeStore, from_dag_cbor, to_dag_cbor};

use crate::RedbKnowledge;

/// What an export or import can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// The CAR stream is malformed or cannot be written.
    #[error("CAR: {0}")]
    Car(String),
    /// The store failed.
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
}

impl From<iroh_car::Error> for CarError {
    fn from(e: iroh_car::Error) -> Self {
        Self::Car(e.to_string())
    }
}

/// The root block of an export: links to every incident in it.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Always [`MANIFEST_KIND`].
    kind: String,
    /// The incidents, oldest first.
    incidents: Vec<cid::Cid>,
}

/// Names the root block of a knowledge export.
pub const MANIFEST_KIND: &str = "x0tta/knowledge-export/v1";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The CAR root: the manifest block linking every incident.
    pub root: ContentId,
    /// Incidents written.
    pub incidents: usize,
}

/// A block an import refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedBlock {
    /// The CID the block claimed.
    pub cid: String,
    /// Why it was refused.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Incidents new to this store.
    pub added: usize,
    /// Incidents it already had.
    pub already_known: usize,
    /// Valid blocks that are not incidents (the manifest, other records).
    pub other_blocks: usize,
    /// Blocks whose bytes do not match their CID, or that are not DAG-CBOR/sha2-256.
    pub refused: Vec<RefusedBlock>,
}

/// Incidents inserted per durable commit during an import.
const IMPORT_BATCH: usize = 1000;

impl RedbKnowledge {
    /// Writes every incident that keeps its body as a CARv1 stream: the root is a manifest
    /// block linking them all, followed by the manifest and the incident blocks.
    pub async fn export_car<W: AsyncWrite + Send + Unpin>(
        &self,
        writer: W,
    ) -> Result<ExportReport, CarError> {
        let incidents = self.recent(usize::MAX).await?;
        let mut blocks = Vec::with_capacity(incidents.len());
        let mut links = Vec::with_capacity(incidents.len());
        for (id, incident) in incidents.into_iter().rev() {
            let bytes = to_dag_cbor(&incident).map_err(KnowledgeError::from)?;
            let cid = cid::Cid::try_from(id.to_bytes().as_slice())
                .map_err(|e| CarError::Car(e.to_string()))?;
            links.push(cid);
            blocks.push((cid, bytes));
        }
        let manifest = Manifest {
            kind: MANIFEST_KIND.into(),
            incidents: links,
        };
        let manifest_bytes = to_dag_cbor(&manifest).map_err(KnowledgeError::from)?;
        let root = ContentId::of_dag_cbor(&manifest_bytes);
        let root_cid = cid::Cid::try_from(root.to_bytes().as_slice())
            .map_err(|e| CarError::Car(e.to_string()))?;
        let mut car = iroh_car::CarWriter::new(iroh_car::CarHeader::new_v1(vec![root_cid]), writer);
        car.write(root_cid, &manifest_bytes).await?;
        for (cid, bytes) in &blocks {
            car.write(*cid, bytes).await?;
        }
        car.finish().await?;
        Ok(ExportReport {
            root,
            incidents: blocks.len(),
        })
    }

    /// Reads a CARv1 stream and stores every incident in it whose bytes match its CID.
    /// Blocks that do not match are refused and listed; nothing unverified is stored.
    pub async fn import_car<R: AsyncRead + Send + Unpin>(
        &self,
        reader: R,
    ) -> Result<ImportReport, CarError> {
        let mut car = iroh_car::CarReader::new(reader).await?;
        let mut report = ImportReport::default();
        let mut batch: Vec<Incident> = Vec::new();
        while let Some((cid, data)) = car.next_block().await? {
            let claimed = cid.to_string();
            let verified = ContentId::of_dag_cbor(&data);
            if verified.to_bytes() != cid.to_bytes() {
                report.refused.push(RefusedBlock {
                    cid: claimed,
                    reason: "bytes do not hash to the CID (or not a DAG-CBOR sha2-256 block)"
                        .into(),
                });
                continue;
            }
            match from_dag_cbor::<Incident>(&data) {
                Ok(incident) => batch.push(incident),
                Err(_) => report.other_blocks += 1,
            }
            if batch.len() >= IMPORT_BATCH {
                self.import_batch(std::mem::take(&mut batch), &mut report)
                    .await?;
            }
        }
        self.import_batch(batch, &mut report).await?;
        Ok(report)
    }

    async fn import_batch(
        &self,
        batch: Vec<Incident>,
        report: &mut ImportReport,
    ) -> Result<(), CarError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let state = to_dag_cbor(&batch).map_err(KnowledgeError::from)?;
        let added = match self.merge_state(&state).await? {
            x0tta_core::MergeOutcome::Merged { added } => added,
            _ => 0,
        };
        report.added += added;
        report.already_known += n - added;
        Ok(())
    }
}
