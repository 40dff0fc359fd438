//! The default planner: matching templates ranked by measured outcomes and retrieved evidence.

use async_trait::async_trait;
use tracing::warn;

use crate::{
    Anomaly, ContentId, PlanContext, PlanDecision, PlanError, Planner, RecoveryPlan, SearchQuery,
};

/// How much retrieved evidence can move a template's score (the success probability is in
/// 0..1; evidence adds at most ± this much).
pub const EVIDENCE_WEIGHT: f64 = 0.2;

/// Chooses among the knowledge store's templates whose trigger matches the anomaly.
///
/// 1. Candidates: templates whose trigger matches and whose every action (and rollback
///    action) is registered.
/// 2. Evidence: a hybrid search with the anomaly's text (and vector, when the node has an
///    embedder), restricted to the anomaly's kind. A past incident healed by a template
///    supports it in proportion to the hit's relevance; a failed one counts against it.
/// 3. Score = success probability + [`EVIDENCE_WEIGHT`] × evidence (in -1..1). The success
///    probability is the Beta(1, 1) posterior mean of that template's recorded outcomes on
///    that anomaly kind ([`PlanStats`](crate::PlanStats)) — measured, never a constant.
///    Ties go to the template with fewer steps, then to the name.
#[derive(Debug, Default, Clone)]
pub struct DefaultPlanner {
    search_limit: usize,
}

impl DefaultPlanner {
    /// A planner that looks at 20 retrieved incidents.
    pub fn new() -> Self {
        Self { search_limit: 20 }
    }

    /// Sets how many incidents retrieval returns.
    pub fn with_search_limit(mut self, n: usize) -> Self {
        self.search_limit = n.max(1);
        self
    }
}

#[async_trait]
impl Planner for DefaultPlanner {
    async fn plan(
        &self,
        anomaly: &Anomaly,
        ctx: &PlanContext<'_>,
    ) -> Result<PlanDecision, PlanError> {
        let templates = ctx.knowledge.templates().await?;
        let candidates: Vec<_> = templates
            .into_iter()
            .filter(|t| t.trigger.matches(anomaly))
            .filter(|t| {
                let missing = t
                    .steps
                    .iter()
                    .flat_map(|s| std::iter::once(&s.action).chain(s.rollback.as_ref().map(|r| &r.action)))
                    .find(|a| !ctx.actions.contains(a));
                if let Some(a) = missing {
                    warn!(template = %t.name, action = %a, "template skipped: action not registered");
                }
                missing.is_none()
            })
            .collect();
        if candidates.is_empty() {
            return Ok(PlanDecision::NoMatch);
        }

        let text = anomaly.to_text();
        let vector = match ctx.embedder {
            Some(e) => match e.embed(&text).await {
                Ok(v) => Some(v),
                Err(err) => {
                    warn!(%err, "embedding failed; planning with text retrieval only");
                    None
                }
            },
            None => None,
        };
        let hits = ctx
            .knowledge
            .search(&SearchQuery {
                text,
                vector,
                kind: Some(anomaly.kind),
                limit: if self.search_limit == 0 {
                    20
                } else {
                    self.search_limit
                },
                filter: Default::default(),
            })
            .await?;
        let total: f64 = hits.iter().map(|h| h.score.max(0.0)).sum();

        let mut best: Option<(f64, RecoveryPlan)> = None;
        for t in candidates {
            let history = ctx.knowledge.plan_stats(&t.name, anomaly.kind).await?;
            let p = history.success_probability();
            let mut support = 0.0;
            let mut evidence: Vec<ContentId> = Vec::new();
            for h in &hits {
                let Some(plan) = &h.incident.plan else {
                    continue;
                };
                if plan.template != t.name || h.incident.report.is_none() {
                    continue;
                }
                let sign = if h.incident.healed() { 1.0 } else { -1.0 };
                if total > 0.0 {
                    support += sign * h.score.max(0.0) / total;
                }
                evidence.push(h.id);
            }
            let score = p + EVIDENCE_WEIGHT * support.clamp(-1.0, 1.0);
            let plan = RecoveryPlan {
                template: t.name.clone(),
                anomaly: anomaly.clone(),
                steps: t.steps.clone(),
                success_probability: p,
                history,
                evidence,
                score,
            };
            let better = match &best {
                None => true,
                Some((s, b)) => {
                    score > *s + 1e-12
                        || ((score - *s).abs() <= 1e-12
                            && (plan.steps.len(), &plan.template) < (b.steps.len(), &b.template))
                }
            };
            if better {
                best = Some((score, plan));
            }
        }
        Ok(best.map_or(PlanDecision::NoMatch, |(_, p)| PlanDecision::Plan(p)))
    }
}
