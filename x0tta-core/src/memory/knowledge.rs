use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{
    ContentId, Incident, KnowledgeError, KnowledgeStore, MergeOutcome, PlanTemplate, Policy,
    SearchHit, SearchQuery, from_dag_cbor, to_dag_cbor,
};

#[derive(Default)]
struct State {
    incidents: HashMap<ContentId, (Incident, Vec<String>)>,
    /// Oldest first.
    order: VecDeque<ContentId>,
    /// Document frequency of each term over stored incidents.
    df: HashMap<String, u32>,
    templates: BTreeMap<String, PlanTemplate>,
    policies: Vec<(ContentId, Policy)>,
}

/// Lower-cased alphanumeric words (underscores and dashes kept), the retrieval tokens.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// An in-memory knowledge store: content-addressed incidents with retention, TF-IDF text
/// search, plan templates, policy history, and state export/merge.
///
/// **Not durable**: everything is lost when the process ends. It ignores query vectors
/// (text retrieval only); x0tta-knowledge provides the durable, hybrid store.
///
/// ```
/// use x0tta_core::{memory::MemoryKnowledge, KnowledgeStore};
/// let store = MemoryKnowledge::new(1000);
/// assert_eq!(store.retention(), 1000);
/// ```
pub struct MemoryKnowledge {
    state: Mutex<State>,
    retention: usize,
}

impl std::fmt::Debug for MemoryKnowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKnowledge")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl MemoryKnowledge {
    /// A store keeping the newest `retention` incidents (at least one).
    pub fn new(retention: usize) -> Self {
        Self {
            state: Mutex::default(),
            retention: retention.max(1),
        }
    }

    /// How many incidents are kept.
    pub fn retention(&self) -> usize {
        self.retention
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, st: &mut State, id: ContentId, incident: Incident) -> bool {
        if st.incidents.contains_key(&id) {
            return false;
        }
        let mut terms = tokens(&incident.to_text());
        terms.sort();
        terms.dedup();
        for t in &terms {
            *st.df.entry(t.clone()).or_default() += 1;
        }
        st.incidents.insert(id, (incident, terms));
        st.order.push_back(id);
        while st.order.len() > self.retention {
            if let Some(old) = st.order.pop_front()
                && let Some((_, terms)) = st.incidents.remove(&old)
            {
                for t in terms {
                    if let Some(c) = st.df.get_mut(&t) {
                        *c -= 1;
                        if *c == 0 {
                            st.df.remove(&t);
                        }
                    }
                }
            }
        }
        true
    }
}

#[async_trait]
impl KnowledgeStore for MemoryKnowledge {
    async fn record(&self, incident: &Incident) -> Result<ContentId, KnowledgeError> {
        let id = incident.content_id()?;
        let mut st = self.lock();
        self.insert(&mut st, id, incident.clone());
        Ok(id)
    }

    async fn get(&self, id: &ContentId) -> Result<Option<Incident>, KnowledgeError> {
        Ok(self.lock().incidents.get(id).map(|(i, _)| i.clone()))
    }

    async fn recent(&self, limit: usize) -> Result<Vec<(ContentId, Incident)>, KnowledgeError> {
        let st = self.lock();
        Ok(st
            .order
            .iter()
            .rev()
            .take(limit)
            .filter_map(|id| st.incidents.get(id).map(|(i, _)| (*id, i.clone())))
            .collect())
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, KnowledgeError> {
        let q = tokens(&query.text);
        if q.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let st = self.lock();
        let n = st.incidents.len() as f64;
        // Query-term weights once; then score every candidate and clone only the hits returned.
        let mut q = q;
        q.sort();
        q.dedup();
        let weighted: Vec<(&String, f64)> = q
            .iter()
            .filter_map(|t| st.df.get(t).map(|df| (t, (1.0 + n / f64::from(*df)).ln())))
            .collect();
        let mut scored: Vec<(f64, ContentId)> = st
            .incidents
            .iter()
            .filter(|(_, (inc, _))| {
                query.kind.is_none_or(|k| inc.anomaly.kind == k) && query.filter.matches(inc)
            })
            .filter_map(|(id, (_, terms))| {
                let score: f64 = weighted
                    .iter()
                    .filter(|(t, _)| terms.binary_search(t).is_ok())
                    .map(|(_, w)| w)
                    .sum();
                (score > 0.0).then_some((score, *id))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(query.limit);
        Ok(scored
            .into_iter()
            .filter_map(|(score, id)| {
                st.incidents.get(&id).map(|(inc, _)| SearchHit {
                    id,
                    score,
                    incident: inc.clone(),
                })
            })
            .collect())
    }

    async fn templates(&self) -> Result<Vec<PlanTemplate>, KnowledgeError> {
        Ok(self.lock().templates.values().cloned().collect())
    }

    async fn put_template(&self, template: PlanTemplate) -> Result<(), KnowledgeError> {
        if template.name.trim().is_empty() {
            return Err(KnowledgeError::Invalid("template name is empty".into()));
        }
        self.lock()
            .templates
            .insert(template.name.clone(), template);
        Ok(())
    }

    async fn record_policy(&self, policy: &Policy) -> Result<ContentId, KnowledgeError> {
        let id = ContentId::of(policy)?;
        let mut st = self.lock();
        if !st.policies.iter().any(|(p, _)| *p == id) {
            st.policies.push((id, policy.clone()));
        }
        Ok(id)
    }

    async fn policy_history(&self) -> Result<Vec<Policy>, KnowledgeError> {
        Ok(self
            .lock()
            .policies
            .iter()
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn export_state(&self) -> Result<Vec<u8>, KnowledgeError> {
        let st = self.lock();
        let incidents: Vec<&Incident> = st
            .order
            .iter()
            .filter_map(|id| st.incidents.get(id).map(|(i, _)| i))
            .collect();
        Ok(to_dag_cbor(&incidents)?)
    }

    async fn merge_state(&self, state: &[u8]) -> Result<MergeOutcome, KnowledgeError> {
        let incoming: Vec<Incident> = from_dag_cbor(state)
            .map_err(|e| KnowledgeError::Invalid(format!("replication state: {e}")))?;
        let mut st = self.lock();
        let mut added = 0;
        for inc in incoming {
            let id = inc.content_id()?;
            if self.insert(&mut st, id, inc) {
                added += 1;
            }
        }
        Ok(if added == 0 {
            MergeOutcome::NoChange
        } else {
            MergeOutcome::Merged { added }
        })
    }
}
