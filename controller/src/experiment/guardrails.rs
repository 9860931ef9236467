//! The guardrails: what stops a candidate, or a whole running experiment,
//! before its window ends. Pure judgements over the latest measurements and
//! the targets' config reports, returning a typed [`Breach`] with its
//! numbers; its `Display` is the reason the experiment shows. A breach of
//! one candidate (critical coverage, CPU overhead) disqualifies that
//! candidate alone: candidates run in shadow, so what one hides costs the
//! fleet nothing. An agent error aborts the experiment.

use serde::{Deserialize, Serialize};

use crate::store::{ExperimentTarget, ReportedState};
use phoenix_config::short_hash as short;

/// Which guardrail: the name in the stored breach and in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guardrail {
    CriticalCoverage,
    CpuOverhead,
    AgentError,
}

impl Guardrail {
    pub const ALL: [Guardrail; 3] = [
        Guardrail::CriticalCoverage,
        Guardrail::CpuOverhead,
        Guardrail::AgentError,
    ];

    /// The guardrails a candidate breaches on its own (disqualifying it).
    pub const PER_CANDIDATE: [Guardrail; 2] = [Guardrail::CriticalCoverage, Guardrail::CpuOverhead];

    pub fn as_str(self) -> &'static str {
        match self {
            Guardrail::CriticalCoverage => "critical_coverage",
            Guardrail::CpuOverhead => "cpu_overhead",
            Guardrail::AgentError => "agent_error",
        }
    }
}

impl std::fmt::Display for Guardrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the guardrails check as measurements land.
#[derive(Debug, Clone)]
pub struct GuardCheck {
    pub candidates: Vec<String>,
    pub min_critical_coverage: Option<f64>,
    /// Per interval: percent of a core × interval / 100.
    pub max_cpu_seconds: Option<f64>,
    pub intervals: u32,
}

/// One interval of a candidate on an agent, as the guardrails see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub critical_total: u64,
    pub critical_visible: u64,
    pub cpu_seconds: f64,
}

/// A guardrail a running experiment broke. Serialized as its fields only:
/// the stored form adds the guardrail's name (see [`Breach::to_json`]).
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(untagged)]
pub enum Breach {
    /// A candidate hid critical processes on an agent for `intervals`
    /// intervals in a row; `visible` of `total` in the latest.
    #[error(
        "{variant:?} kept {visible} of {total} critical processes visible on agent {agent} \
         for {intervals} intervals in a row (minimum {:.0}%)",
        .min_coverage * 100.0
    )]
    CriticalCoverage {
        variant: String,
        agent: String,
        intervals: u32,
        visible: u64,
        total: u64,
        min_coverage: f64,
    },
    /// A candidate cost more CPU than allowed on an agent for `intervals`
    /// intervals in a row; `cpu_seconds` in the latest.
    #[error(
        "{variant:?} used more than {max_cpu_seconds:.4} CPU seconds per interval on agent {agent} \
         for {intervals} intervals in a row"
    )]
    CpuOverhead {
        variant: String,
        agent: String,
        intervals: u32,
        cpu_seconds: f64,
        max_cpu_seconds: f64,
    },
    /// A target reported that it could not apply the experiment's config.
    #[error("agent {agent} reports a config failure: {error}")]
    AgentFailed { agent: String, error: String },
    /// A target runs another config than the experiment's.
    #[error(
        "agent {agent} runs config {} instead of the experiment's {}",
        short(.runs),
        short(.expected)
    )]
    AgentRunsOther {
        agent: String,
        runs: String,
        expected: String,
    },
}

impl Breach {
    /// The candidate a breach disqualifies; `None` for an agent error,
    /// which is the whole experiment's.
    pub fn variant(&self) -> Option<&str> {
        match self {
            Breach::CriticalCoverage { variant, .. } | Breach::CpuOverhead { variant, .. } => {
                Some(variant)
            }
            Breach::AgentFailed { .. } | Breach::AgentRunsOther { .. } => None,
        }
    }

    pub fn guardrail(&self) -> Guardrail {
        match self {
            Breach::CriticalCoverage { .. } => Guardrail::CriticalCoverage,
            Breach::CpuOverhead { .. } => Guardrail::CpuOverhead,
            Breach::AgentFailed { .. } | Breach::AgentRunsOther { .. } => Guardrail::AgentError,
        }
    }

    /// The stored form: the breach's fields, its guardrail and its message
    /// (what the API and `phoenixctl` show).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Stored<'a> {
            guardrail: Guardrail,
            #[serde(flatten)]
            breach: &'a Breach,
            message: String,
        }
        let stored = Stored {
            guardrail: self.guardrail(),
            breach: self,
            message: self.to_string(),
        };
        // Strings and finite or non-finite numbers all serialize (serde_json
        // writes a non-finite float as null): this cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }
}

/// A stored breach as the scheduler needs it: which guardrail, and why.
/// Rows written before breaches were typed have the same two fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BreachNote {
    #[serde(default = "coverage", deserialize_with = "guardrail_or_coverage")]
    pub guardrail: Guardrail,
    #[serde(default = "breached")]
    pub message: String,
}

fn coverage() -> Guardrail {
    Guardrail::CriticalCoverage
}

/// A guardrail name this controller does not know (written by a newer
/// one) still leaves the note's message readable.
fn guardrail_or_coverage<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Guardrail, D::Error> {
    let name = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(name).unwrap_or_else(|_| coverage()))
}

fn breached() -> String {
    "guardrail breached".into()
}

impl BreachNote {
    /// Read the stored text; text that is not a breach object is taken as
    /// the message of a coverage breach (the only guardrail checked where
    /// measurements land when breaches were first stored).
    pub fn parse(stored: &str) -> BreachNote {
        serde_json::from_str(stored).unwrap_or_else(|_| BreachNote {
            guardrail: Guardrail::CriticalCoverage,
            message: stored.to_string(),
        })
    }
}

impl From<&Breach> for BreachNote {
    fn from(b: &Breach) -> Self {
        BreachNote {
            guardrail: b.guardrail(),
            message: b.to_string(),
        }
    }
}

impl GuardCheck {
    /// Whether any guardrail looks at measurements.
    pub fn watches_measurements(&self) -> bool {
        self.min_critical_coverage.is_some() || self.max_cpu_seconds.is_some()
    }

    /// The breaches on `agent`, at most one per candidate, in the order of
    /// `latest`: a candidate whose latest `intervals` intervals (newest
    /// first, as `latest` gives them per candidate) are all below the
    /// coverage floor or all above the CPU ceiling. Fewer intervals than
    /// that judge nothing yet. Every candidate is judged: one's breach must
    /// not hide another's, as each is disqualified on its own.
    pub fn check(&self, agent: &str, latest: &[(String, Vec<Sample>)]) -> Vec<Breach> {
        latest
            .iter()
            .filter_map(|(variant, samples)| {
                let samples = samples.get(..self.intervals as usize)?;
                let newest = samples.first()?;
                if let Some(min) = self.min_critical_coverage
                    && samples.iter().all(|s| {
                        s.critical_total > 0
                            && (s.critical_visible as f64) < min * s.critical_total as f64
                    })
                {
                    return Some(Breach::CriticalCoverage {
                        variant: variant.clone(),
                        agent: agent.to_string(),
                        intervals: self.intervals,
                        visible: newest.critical_visible,
                        total: newest.critical_total,
                        min_coverage: min,
                    });
                }
                let max = self.max_cpu_seconds?;
                samples
                    .iter()
                    .all(|s| s.cpu_seconds > max)
                    .then(|| Breach::CpuOverhead {
                        variant: variant.clone(),
                        agent: agent.to_string(),
                        intervals: self.intervals,
                        cpu_seconds: newest.cpu_seconds,
                        max_cpu_seconds: max,
                    })
            })
            .collect()
    }
}

/// The first target that does not run one of the experiment's configs: it
/// reports a failure, or runs a config not in `accepted`. `accepted` holds
/// the composed config's hash and those of the configs reduced since by
/// disqualifications, the newest last: while a reduced config rolls out, a
/// target may run any of them. A target refusing a reduced config reports
/// a failure, and that is an agent error like any other.
pub fn agent_error(targets: &[ExperimentTarget], accepted: &[String]) -> Option<Breach> {
    targets.iter().find_map(|t| {
        if t.config_state == ReportedState::Failed {
            Some(Breach::AgentFailed {
                agent: t.agent_id.clone(),
                error: t.config_error.clone(),
            })
        } else if !accepted.contains(&t.effective_hash) {
            Some(Breach::AgentRunsOther {
                agent: t.agent_id.clone(),
                runs: t.effective_hash.clone(),
                expected: accepted.last().cloned().unwrap_or_default(),
            })
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AgentStatus;

    fn guard(coverage: Option<f64>, cpu: Option<f64>) -> GuardCheck {
        GuardCheck {
            candidates: vec!["lean".into()],
            min_critical_coverage: coverage,
            max_cpu_seconds: cpu,
            intervals: 3,
        }
    }

    fn sample(visible: u64, total: u64, cpu_seconds: f64) -> Sample {
        Sample {
            critical_total: total,
            critical_visible: visible,
            cpu_seconds,
        }
    }

    fn latest(samples: Vec<Sample>) -> Vec<(String, Vec<Sample>)> {
        vec![("lean".to_string(), samples)]
    }

    #[test]
    fn coverage_below_the_floor_for_every_interval_is_a_breach_with_its_numbers() {
        let g = guard(Some(0.9), None);
        let low = latest(vec![
            sample(3, 4, 0.0),
            sample(1, 4, 0.0),
            sample(0, 4, 0.0),
        ]);
        let [breach] = &g.check("a", &low)[..] else {
            panic!("3 of 3 intervals below 90%: one breach")
        };
        assert_eq!(
            *breach,
            Breach::CriticalCoverage {
                variant: "lean".into(),
                agent: "a".into(),
                intervals: 3,
                visible: 3,
                total: 4,
                min_coverage: 0.9,
            }
        );
        assert_eq!(
            breach.to_string(),
            "\"lean\" kept 3 of 4 critical processes visible on agent a \
             for 3 intervals in a row (minimum 90%)"
        );
        assert_eq!(breach.guardrail(), Guardrail::CriticalCoverage);
    }

    #[test]
    fn coverage_is_judged_only_on_a_full_run_of_intervals_with_critical_processes() {
        let g = guard(Some(1.0), None);
        // Two intervals are not three.
        assert_eq!(
            g.check("a", &latest(vec![sample(0, 2, 0.0), sample(0, 2, 0.0)])),
            []
        );
        // One interval at the floor breaks the run.
        let run = vec![sample(1, 2, 0.0), sample(2, 2, 0.0), sample(1, 2, 0.0)];
        assert_eq!(g.check("a", &latest(run)), []);
        // No critical process to see is no breach.
        let none = vec![sample(0, 0, 0.0); 3];
        assert_eq!(g.check("a", &latest(none)), []);
        // Older intervals beyond the run do not count.
        let mut long = vec![sample(1, 2, 0.0); 3];
        long.push(sample(2, 2, 0.0));
        assert_eq!(g.check("a", &latest(long)).len(), 1);
    }

    #[test]
    fn cpu_above_the_ceiling_for_every_interval_is_a_breach() {
        let g = guard(None, Some(0.05));
        let hot = latest(vec![
            sample(2, 2, 0.07),
            sample(2, 2, 0.06),
            sample(2, 2, 0.051),
        ]);
        let [breach] = &g.check("a", &hot)[..] else {
            panic!("3 intervals above 0.05 s: one breach")
        };
        assert_eq!(
            *breach,
            Breach::CpuOverhead {
                variant: "lean".into(),
                agent: "a".into(),
                intervals: 3,
                cpu_seconds: 0.07,
                max_cpu_seconds: 0.05,
            }
        );
        assert_eq!(
            breach.to_string(),
            "\"lean\" used more than 0.0500 CPU seconds per interval on agent a \
             for 3 intervals in a row"
        );
        let cool = latest(vec![
            sample(2, 2, 0.07),
            sample(2, 2, 0.05),
            sample(2, 2, 0.06),
        ]);
        assert_eq!(g.check("a", &cool), []);
    }

    #[test]
    fn each_breaching_candidate_is_reported_once_coverage_before_cpu() {
        let g = guard(Some(1.0), Some(0.0));
        let both = vec![sample(0, 1, 1.0); 3];
        let by_variant = vec![
            ("calm".to_string(), vec![sample(1, 1, 0.0); 3]),
            ("wild".to_string(), both.clone()),
            ("late".to_string(), both),
        ];
        let breaches = g.check("a", &by_variant);
        let judged: Vec<(Guardrail, Option<&str>)> = breaches
            .iter()
            .map(|b| (b.guardrail(), b.variant()))
            .collect();
        assert_eq!(
            judged,
            [
                (Guardrail::CriticalCoverage, Some("wild")),
                (Guardrail::CriticalCoverage, Some("late"))
            ]
        );
        assert!(!guard(None, None).watches_measurements());
    }

    fn target(id: &str, state: ReportedState, error: &str, effective: &str) -> ExperimentTarget {
        ExperimentTarget {
            agent_id: id.into(),
            previous_hash: String::new(),
            previous_content: None,
            status: AgentStatus::Online,
            effective_hash: effective.into(),
            config_state: state,
            config_error: error.into(),
            desired_elsewhere: None,
        }
    }

    #[test]
    fn a_target_failing_or_running_another_config_is_an_agent_error() {
        let experiment = vec!["exp-hash-fedcba98".to_string()];
        let ok = target("a", ReportedState::Applied, "", &experiment[0]);
        assert_eq!(agent_error(std::slice::from_ref(&ok), &experiment), None);
        let failed = target("b", ReportedState::Failed, "bad exporter", &experiment[0]);
        let breach = agent_error(&[ok.clone(), failed], &experiment).unwrap();
        assert_eq!(
            breach.to_string(),
            "agent b reports a config failure: bad exporter"
        );
        assert_eq!(breach.guardrail(), Guardrail::AgentError);
        assert_eq!(breach.variant(), None);
        let other = target("c", ReportedState::Applied, "", "0123456789abcdef");
        let breach = agent_error(&[ok, other], &experiment).unwrap();
        assert_eq!(
            breach.to_string(),
            "agent c runs config 0123456789ab instead of the experiment's exp-hash-fed"
        );
    }

    #[test]
    fn while_a_reduced_config_rolls_out_either_config_is_the_experiments() {
        // The composed config, then the one without a disqualified candidate.
        let accepted = vec![
            "composed-0000000".to_string(),
            "reduced-11111111".to_string(),
        ];
        let old = target("a", ReportedState::Applied, "", &accepted[0]);
        let new = target("b", ReportedState::Applied, "", &accepted[1]);
        assert_eq!(agent_error(&[old.clone(), new.clone()], &accepted), None);
        // Refusing the reduced config is still an agent error.
        let refused = target("c", ReportedState::Failed, "bad config", &accepted[0]);
        let breach = agent_error(&[old, new, refused], &accepted).unwrap();
        assert!(matches!(breach, Breach::AgentFailed { ref agent, .. } if agent == "c"));
        // Anything else names the newest config as the expected one.
        let other = target("d", ReportedState::Applied, "", "fedcba9876543210");
        let breach = agent_error(&[other], &accepted).unwrap();
        assert_eq!(
            breach.to_string(),
            "agent d runs config fedcba987654 instead of the experiment's reduced-1111"
        );
    }

    #[test]
    fn the_stored_breach_keeps_the_old_shape_and_old_rows_still_read() {
        let breach = Breach::CpuOverhead {
            variant: "lean".into(),
            agent: "a".into(),
            intervals: 3,
            cpu_seconds: 0.07,
            max_cpu_seconds: 0.05,
        };
        let stored: serde_json::Value = serde_json::from_str(&breach.to_json()).unwrap();
        assert_eq!(stored["guardrail"], "cpu_overhead");
        assert_eq!(stored["variant"], "lean");
        assert_eq!(stored["agent"], "a");
        assert_eq!(stored["intervals"], 3);
        assert_eq!(stored["message"], breach.to_string());
        assert_eq!(stored["max_cpu_seconds"], 0.05);
        assert_eq!(
            BreachNote::parse(&breach.to_json()),
            BreachNote::from(&breach)
        );
        let agent = Breach::AgentFailed {
            agent: "a".into(),
            error: "bad".into(),
        };
        let stored: serde_json::Value = serde_json::from_str(&agent.to_json()).unwrap();
        assert_eq!(stored["guardrail"], "agent_error");
        // A row written before: the same guardrail and message.
        let old = r#"{"guardrail":"critical_coverage","variant":"lean","agent":"a",
            "intervals":3,"message":"\"lean\" kept 0 of 2 critical processes visible"}"#;
        assert_eq!(
            BreachNote::parse(old),
            BreachNote {
                guardrail: Guardrail::CriticalCoverage,
                message: "\"lean\" kept 0 of 2 critical processes visible".into(),
            }
        );
        // What the scheduler read before for odd rows, it still reads.
        assert_eq!(
            BreachNote::parse("{}"),
            BreachNote {
                guardrail: Guardrail::CriticalCoverage,
                message: "guardrail breached".into(),
            }
        );
        assert_eq!(
            BreachNote::parse("not json").message,
            "not json".to_string()
        );
        // A guardrail from a newer controller keeps its message.
        assert_eq!(
            BreachNote::parse(r#"{"guardrail": "future_kind", "message": "why"}"#),
            BreachNote {
                guardrail: Guardrail::CriticalCoverage,
                message: "why".into(),
            }
        );
    }
}
