//! Federated rounds between running nodes, on the clock and the policy's interval.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x0tta_core::{AggregationRule, FederatedPolicy, PolicyHandle, Signer, Transport, Verifier};

use super::{FL_TOPIC, Federation, FlConfig, FlError, Rule, norm};
use crate::graph::{GraphSage, Labelled};

impl From<AggregationRule> for Rule {
    /// The policy's rule: a trimmed mean drops a third at each end; Krum withstands a third.
    fn from(r: AggregationRule) -> Self {
        match r {
            AggregationRule::Fedavg => Rule::FedAvg,
            AggregationRule::Median => Rule::Median,
            AggregationRule::TrimmedMean => Rule::TrimmedMean { trim: 1.0 / 3.0 },
            AggregationRule::Krum => Rule::Krum { byzantine: 0 },
        }
    }
}

/// What one round did on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundReport {
    /// The round (`Unix time / interval`).
    pub round: u64,
    /// The rule the policy chose for it.
    pub rule: Rule,
    /// Bytes of this node's own sealed update (0: it had no labelled incidents).
    pub published: usize,
    /// Peers' updates accepted.
    pub accepted: usize,
    /// Peers' updates refused (bad signature, wrong round or shape, too large, duplicate…).
    pub refused: usize,
    /// Updates combined (own and accepted); 0 when the round changed nothing.
    pub combined: usize,
    /// L2 norm of the change applied to the model.
    pub step_norm: f32,
    /// Why the model did not change, when it did not.
    pub skipped: Option<String>,
}

/// One node's part in federated learning over a live mesh.
///
/// Rounds follow the clock: round `r` is the `r`-th `federated.interval` since the Unix epoch,
/// so every node agrees on it without talking. In each round the node:
/// 1. trains a copy of the global model on its own labelled incidents (the `data` callback, on
///    a blocking thread) and, a tenth of the interval into the round (at most a minute, so
///    that peers whose clocks lag have entered it), publishes the signed, clipped update on
///    [`FL_TOPIC`];
/// 2. until the round ends, offers every update it hears to its [`Federation`] (refusals are
///    counted, never fatal);
/// 3. combines its own and the accepted updates with the policy's rule and reports.
///
/// The policy is read at the start of every round, so a governance vote that changes
/// `federated.rule` or `federated.interval` takes effect at the next one; with
/// `federated.enabled` off the node sits rounds out.
///
/// ```no_run
/// # async fn demo(
/// #     model: x0tta_analysis::graph::GraphSage,
/// #     transport: std::sync::Arc<dyn x0tta_core::Transport>,
/// #     signer: std::sync::Arc<dyn x0tta_core::Signer>,
/// #     verifier: std::sync::Arc<dyn x0tta_core::Verifier>,
/// #     policy: x0tta_core::PolicyHandle,
/// # ) -> Result<(), x0tta_analysis::federated::FlError> {
/// use x0tta_analysis::federated::{FlConfig, Participant};
/// let mut p = Participant::new(model, FlConfig::default(), transport, signer, verifier).await?;
/// p.run(&policy, Vec::new, |model, report| {
///     println!("round {}: {} updates combined", report.round, report.combined);
///     let _ = model; // e.g. save it as the next patterns.bin
/// })
/// .await
/// # }
/// ```
pub struct Participant {
    fed: Federation,
    local: FlConfig,
    transport: Arc<dyn Transport>,
    signer: Arc<dyn Signer>,
    verifier: Arc<dyn Verifier>,
    updates: x0tta_core::Subscription,
    /// The first round the next call may run (rounds never repeat, even if the timer wakes a
    /// little before the clock's slot ends).
    next: u64,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("node", self.signer.node_id())
            .field("round", &self.fed.round())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Participant {
    /// Subscribes to [`FL_TOPIC`] on `transport`; starts from `model`. `local` sets the
    /// local training (epochs, learning rate); the rule and norms come from the policy.
    pub async fn new(
        model: GraphSage,
        local: FlConfig,
        transport: Arc<dyn Transport>,
        signer: Arc<dyn Signer>,
        verifier: Arc<dyn Verifier>,
    ) -> Result<Self, FlError> {
        let updates = transport
            .subscribe(FL_TOPIC)
            .await
            .map_err(|e| FlError::Malformed(format!("subscribing to {FL_TOPIC}: {e}")))?;
        Ok(Self {
            fed: Federation::new(model, local),
            local,
            transport,
            signer,
            verifier,
            updates,
            next: 0,
        })
    }

    /// The global model as of the last round.
    pub fn model(&self) -> &GraphSage {
        self.fed.model()
    }

    /// Runs rounds until the transport closes: `data` gives the node's labelled incidents at
    /// the start of each round, `on_round` sees the model and the report after each.
    pub async fn run<D, R>(
        &mut self,
        policy: &PolicyHandle,
        mut data: D,
        mut on_round: R,
    ) -> Result<(), FlError>
    where
        D: FnMut() -> Vec<Labelled>,
        R: FnMut(&GraphSage, &RoundReport),
    {
        loop {
            let p = policy.current().federated.clone();
            let Some(report) = self.round(&p, &mut data).await? else {
                return Ok(());
            };
            on_round(self.fed.model(), &report);
        }
    }

    /// One round under `p`, from now to the end of the current slot; `None` once the
    /// transport closed.
    async fn round<D>(
        &mut self,
        p: &FederatedPolicy,
        data: &mut D,
    ) -> Result<Option<RoundReport>, FlError>
    where
        D: FnMut() -> Vec<Labelled>,
    {
        let interval = u64::try_from(p.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let start = now_ms();
        let round = (start / interval).max(self.next);
        self.next = round.saturating_add(1);
        let end = round.saturating_add(1).saturating_mul(interval);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(end.saturating_sub(start));
        let cfg = FlConfig {
            rule: p.rule.into(),
            clip_norm: p.clip_norm as f32,
            max_norm: (p.max_norm > 0.0).then_some(p.max_norm as f32),
            ..self.local
        };
        self.fed.enter(round, cfg);
        let mut report = RoundReport {
            round,
            rule: cfg.rule,
            published: 0,
            accepted: 0,
            refused: 0,
            combined: 0,
            step_norm: 0.0,
            skipped: None,
        };

        // Train on a blocking thread while updates keep arriving.
        let mut own = None;
        if p.enabled {
            let examples = data();
            if !examples.is_empty() {
                let trainer = Federation::new(self.fed.model().try_clone()?, cfg);
                let samples = examples.len() as u64;
                let delta = tokio::task::spawn_blocking(move || trainer.local_update(&examples))
                    .await
                    .map_err(|e| FlError::Malformed(format!("local training stopped: {e}")))??;
                own = Some((delta, samples));
            }
        }
        let publish_at = tokio::time::Instant::now()
            .checked_add(Duration::from_millis((interval / 10).min(60_000)))
            .unwrap_or(deadline)
            .min(deadline);
        let mut pending_publish = own.is_some();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(publish_at), if pending_publish => {
                    pending_publish = false;
                    if let Some((delta, samples)) = &own {
                        let bytes = self.fed.seal(delta, *samples, self.signer.as_ref())?;
                        report.published = bytes.len();
                        if let Err(e) = self.transport.publish(FL_TOPIC, bytes).await {
                            tracing::warn!(round, error = %e, "federated update not published");
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
                m = self.updates.next() => {
                    let Some(m) = m else { return Ok(None) };
                    if !p.enabled {
                        continue;
                    }
                    match self.fed.offer(&m.payload, self.verifier.as_ref()) {
                        Ok(_) => report.accepted += 1,
                        Err(e) => {
                            report.refused += 1;
                            tracing::debug!(round, from = %m.from, error = %e, "federated update refused");
                        }
                    }
                }
            }
        }

        let before = self.fed.model().parameters()?;
        let own = own.map(|(d, _)| d);
        if own.is_none() && self.fed.pending() == 0 {
            report.skipped = Some("no update this round".into());
            return Ok(Some(report));
        }
        match self.fed.finish(own) {
            Ok(n) => {
                report.combined = n;
                let after = self.fed.model().parameters()?;
                let step: Vec<f32> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
                report.step_norm = norm(&step);
            }
            // Too few for the rule (Krum with three updates): the model stays as it was.
            Err(e @ FlError::TooFew(_)) => report.skipped = Some(e.to_string()),
            Err(e) => return Err(e),
        }
        Ok(Some(report))
    }
}
