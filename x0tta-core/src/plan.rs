//! Recovery plans: templates (the seed's `recovery_plan` layout), the plans chosen from them,
//! and the statistics that give a plan its success probability.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Anomaly, AnomalyKind, ContentId, Observation, Severity, Subject};

/// A parameter value of a plan step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    Str(String),
    /// A list.
    List(Vec<ParamValue>),
}

/// Named parameters of a step.
pub type Params = BTreeMap<String, ParamValue>;

/// A parameter that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{name}`: {problem}")]
pub struct ParamError {
    /// The parameter.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

/// Typed access to [`Params`].
pub trait ParamsExt {
    /// A text parameter, if present.
    fn text(&self, name: &str) -> Result<Option<&str>, ParamError>;
    /// A non-negative integer parameter, if present.
    fn uint(&self, name: &str) -> Result<Option<u64>, ParamError>;
    /// A list of text, if present.
    fn text_list(&self, name: &str) -> Result<Option<Vec<String>>, ParamError>;
}

impl ParamsExt for Params {
    fn text(&self, name: &str) -> Result<Option<&str>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Str(s)) => Ok(Some(s)),
            Some(other) => Err(ParamError {
                name: name.into(),
                problem: format!("expected text, found {other:?}"),
            }),
        }
    }
    fn uint(&self, name: &str) -> Result<Option<u64>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(other) => Err(ParamError {
                name: name.into(),
                problem: format!("expected a non-negative integer, found {other:?}"),
            }),
        }
    }
    fn text_list(&self, name: &str) -> Result<Option<Vec<String>>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Str(s)) => Ok(Some(vec![s.clone()])),
            Some(ParamValue::List(items)) => items
                .iter()
                .map(|v| match v {
                    ParamValue::Str(s) => Ok(s.clone()),
                    other => Err(ParamError {
                        name: name.into(),
                        problem: format!("expected a list of text, found item {other:?}"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(ParamError {
                name: name.into(),
                problem: format!("expected a list of text, found {other:?}"),
            }),
        }
    }
}

/// A comparison operator in a [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }
}

/// A step's guard: comparisons of metrics with numbers joined by `and`,
/// e.g. `host.memory.percent > 80 and service.web.memory_mb >= 200`.
///
/// A metric absent from the observation makes its comparison false.
///
/// ```
/// use x0tta_core::{Condition, Observation, NodeId};
/// let c: Condition = "host.cpu.percent > 80 and host.memory.percent <= 50".parse()?;
/// let mut obs = Observation::new(NodeId::new("n")?);
/// obs.set("host.cpu.percent", 95.0);
/// obs.set("host.memory.percent", 40.0);
/// assert!(c.holds(&obs));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    clauses: Vec<(String, CmpOp, f64)>,
}

/// A condition that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "bad condition `{text}`: {problem} (expected `<metric> <op> <number> [and …]`, op one of > >= < <= == !=)"
)]
pub struct ConditionError {
    text: String,
    problem: String,
}

impl FromStr for Condition {
    type Err = ConditionError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |problem: String| ConditionError {
            text: text.to_string(),
            problem,
        };
        let mut clauses = Vec::new();
        for clause in text.split(" and ") {
            let parts: Vec<&str> = clause.split_whitespace().collect();
            let [metric, op, value] = parts.as_slice() else {
                return Err(err(format!("clause `{}` needs three words", clause.trim())));
            };
            let op = match *op {
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                other => return Err(err(format!("unknown operator `{other}`"))),
            };
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| err(format!("`{value}` is not a number")))?;
            clauses.push((metric.to_string(), op, value));
        }
        Ok(Self { clauses })
    }
}

impl Condition {
    /// Whether every clause holds on `obs`.
    pub fn holds(&self, obs: &Observation) -> bool {
        self.clauses
            .iter()
            .all(|(m, op, v)| obs.get(m).is_some_and(|x| op.holds(x, *v)))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (m, op, v)) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{m} {} {v}", op.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An action to run with parameters and a timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCall {
    /// The registered action's name.
    pub action: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
    /// How long it may take.
    #[serde(with = "crate::serde_duration", default = "default_step_timeout")]
    pub timeout: Duration,
}

fn default_step_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// A name for reports; defaults to the action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registered action's name.
    pub action: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
    /// How long the step may take before it counts as failed.
    #[serde(with = "crate::serde_duration", default = "default_step_timeout")]
    pub timeout: Duration,
    /// What undoes this step if a later one fails. Without it, the action's own
    /// [`Action::rollback`](crate::Action::rollback) runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<ActionCall>,
    /// The step runs only when this holds on the observation that raised the anomaly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl StepSpec {
    /// A step running `action` with no parameters and the default timeout.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            name: None,
            action: action.into(),
            params: Params::new(),
            timeout: default_step_timeout(),
            rollback: None,
            condition: None,
        }
    }
    /// Sets the timeout (builder style).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Adds a parameter (builder style).
    pub fn param(mut self, k: impl Into<String>, v: ParamValue) -> Self {
        self.params.insert(k.into(), v);
        self
    }
    /// The name shown in reports.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.action)
    }
}

/// What kind of subject a trigger matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectClass {
    /// The node itself.
    Host,
    /// Any service.
    Service,
    /// Any peer.
    Peer,
    /// Any link.
    Link,
    /// The mesh.
    Mesh,
}

/// When a template applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Anomaly kinds it handles.
    pub kinds: Vec<AnomalyKind>,
    /// Lowest severity it acts on.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Restricts the subject's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectClass>,
    /// Restricts to these services (for service subjects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

fn default_min_severity() -> Severity {
    Severity::Medium
}

impl Trigger {
    /// Whether the trigger matches `a`.
    pub fn matches(&self, a: &Anomaly) -> bool {
        if !self.kinds.contains(&a.kind) || a.severity < self.min_severity {
            return false;
        }
        let class_ok = matches!(
            (&self.subject, &a.subject),
            (None, _)
                | (Some(SubjectClass::Host), Subject::Host)
                | (Some(SubjectClass::Service), Subject::Service(_))
                | (Some(SubjectClass::Peer), Subject::Peer(_))
                | (Some(SubjectClass::Link), Subject::Link(_))
                | (Some(SubjectClass::Mesh), Subject::Mesh)
        );
        let service_ok = self.services.is_empty()
            || matches!(&a.subject, Subject::Service(s) if self.services.contains(s));
        class_ok && service_ok
    }
}

/// A reusable recovery recipe: when it applies and the steps it takes.
///
/// Stored in the knowledge store and loaded from YAML files in the seed's `recovery_plan`
/// layout (see `examples/plans/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTemplate {
    /// Unique name.
    pub name: String,
    /// What it does, for people.
    #[serde(default)]
    pub description: String,
    /// When it applies.
    pub trigger: Trigger,
    /// Steps, run in order.
    pub steps: Vec<StepSpec>,
}

/// Outcomes recorded for one template on one anomaly kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStats {
    /// Executions that succeeded and verified.
    pub successes: u32,
    /// Executions that failed or did not verify.
    pub failures: u32,
}

impl PlanStats {
    /// Posterior mean of the success rate under a uniform Beta(1, 1) prior:
    /// `(s + 1) / (s + f + 2)`. With no history this is 0.5; it moves with every outcome.
    ///
    /// ```
    /// use x0tta_core::PlanStats;
    /// assert_eq!(PlanStats::default().success_probability(), 0.5);
    /// assert_eq!(PlanStats { successes: 8, failures: 0 }.success_probability(), 0.9);
    /// ```
    pub fn success_probability(&self) -> f64 {
        (f64::from(self.successes) + 1.0)
            / (f64::from(self.successes) + f64::from(self.failures) + 2.0)
    }

    /// Records one outcome.
    pub fn record(&mut self, success: bool) {
        if success {
            self.successes = self.successes.saturating_add(1);
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }
}

/// A plan chosen for one anomaly: the Plan phase's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPlan {
    /// The template it came from.
    pub template: String,
    /// The anomaly it answers.
    pub anomaly: Anomaly,
    /// Steps to run.
    pub steps: Vec<StepSpec>,
    /// Measured probability of success (posterior mean over recorded outcomes).
    pub success_probability: f64,
    /// The outcomes it was computed from.
    pub history: PlanStats,
    /// Similar past incidents that supported the choice.
    pub evidence: Vec<ContentId>,
    /// The ranking score among candidate templates.
    pub score: f64,
}
