//! The rollout rules: what an agent's config report means for its record
//! and for the push targets it answers, and whether a reconnecting agent
//! gets its desired config again. Pure functions over the report and the
//! rows the store read; the store writes the decisions they return.

use crate::store::{ReportedState, StatusReport, TargetState};
use phoenix_config::short_hash as short;

/// A push target as the store holds it: which push, the config hash that
/// push carries, and where the target stands.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    pub push_id: String,
    pub push_hash: String,
    pub state: TargetState,
}

/// The rows a report is judged against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportContext {
    /// The target the report names by push id, when the store has it.
    pub answered: Option<TargetRow>,
    /// The target of the agent's desired config, when it has one.
    pub desired: Option<TargetRow>,
}

/// What told the controller that a target moved, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The agent answered the push by its id.
    ConfigStatus,
    /// The agent runs the push's config, as its effective hash shows.
    EffectiveHash,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::ConfigStatus => "config_status",
            Evidence::EffectiveHash => "effective_hash",
        }
    }
}

/// One target to move.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUpdate {
    pub push_id: String,
    pub state: TargetState,
    pub error: String,
    pub reported_hash: String,
    pub via: Evidence,
}

/// What a report changes: the agent's record, then these targets in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDecision {
    /// The config the agent runs, when the report tells; else the record
    /// keeps the one it has.
    pub effective_hash: Option<String>,
    pub targets: Vec<TargetUpdate>,
}

/// The config the agent runs: what it says, or the reported hash when it
/// says that one is applied.
fn effective_hash(report: &StatusReport) -> Option<&str> {
    if !report.effective_hash.is_empty() {
        Some(&report.effective_hash)
    } else if report.state == ReportedState::Applied && !report.hash.is_empty() {
        Some(&report.hash)
    } else {
        None
    }
}

/// The state and error an answer gives the target it names, or `None`
/// when it says nothing final or in progress (an unspecified state leaves
/// the target where it is).
fn answer(report: &StatusReport, push_hash: &str) -> Option<(TargetState, String)> {
    match report.state {
        // The agent must run exactly the pushed config: another hash means
        // it applied something else, whatever it believes.
        ReportedState::Applied if report.hash != push_hash => Some((
            TargetState::Failed,
            format!(
                "the agent reported hash {} but the push carries {push_hash}",
                short(&report.hash)
            ),
        )),
        ReportedState::Applied => Some((TargetState::Applied, String::new())),
        ReportedState::Failed if report.error.is_empty() => Some((
            TargetState::Failed,
            "the agent reported FAILED without a reason".to_string(),
        )),
        ReportedState::Failed => Some((TargetState::Failed, report.error.clone())),
        ReportedState::Applying => Some((TargetState::Applying, String::new())),
        ReportedState::Unspecified => None,
    }
}

/// Whether a target still waits for an answer. A timed-out one does: a
/// late answer still settles it.
fn is_open(state: TargetState) -> bool {
    matches!(
        state,
        TargetState::Pending | TargetState::Applying | TargetState::Timeout
    )
}

/// Judge a report: the answer to the push it names, then (without or
/// besides a push id) the desired target counts as applied when the agent
/// already runs its config, e.g. it applied the push while the controller
/// was away and reports only its effective hash on Hello.
pub fn judge_report(report: &StatusReport, rows: &ReportContext) -> ReportDecision {
    let effective = effective_hash(report);
    // A superseded target takes no answer: the agent has a newer desired
    // config, and that push's outcome is the one that counts.
    let answered = rows
        .answered
        .as_ref()
        .filter(|t| !report.push_id.is_empty() && t.state != TargetState::Superseded)
        .and_then(|t| {
            let (state, error) = answer(report, &t.push_hash)?;
            Some(TargetUpdate {
                push_id: t.push_id.clone(),
                state,
                error,
                reported_hash: report.hash.clone(),
                via: Evidence::ConfigStatus,
            })
        });
    let caught_up = match (effective, &rows.desired) {
        (Some(effective), Some(desired)) => {
            // The desired target as the answer above leaves it.
            let state = match &answered {
                Some(a) if a.push_id == desired.push_id => a.state,
                _ => desired.state,
            };
            (is_open(state)
                && desired.push_hash == effective
                && report.state != ReportedState::Failed)
                .then(|| TargetUpdate {
                    push_id: desired.push_id.clone(),
                    state: TargetState::Applied,
                    error: String::new(),
                    reported_hash: effective.to_string(),
                    via: Evidence::EffectiveHash,
                })
        }
        _ => None,
    };
    ReportDecision {
        effective_hash: effective.map(str::to_string),
        targets: answered.into_iter().chain(caught_up).collect(),
    }
}

/// Whether a reconnecting agent gets its desired config (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Nothing to send: the agent runs it, refused it (a FAILED answer
    /// stands until a new push; re-sending would only fail again), or a
    /// newer push replaced it.
    Nothing,
    /// Send it; a target never sent before becomes `applying`.
    Send { mark_applying: bool },
}

/// Decide whether to send the desired config, whose target is `desired`,
/// to an agent running `effective_hash`.
pub fn offer_desired(desired: &TargetRow, effective_hash: &str) -> Offer {
    if desired.push_hash == effective_hash
        || matches!(desired.state, TargetState::Failed | TargetState::Superseded)
    {
        Offer::Nothing
    } else {
        Offer::Send {
            mark_applying: desired.state == TargetState::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: ReportedState, push_id: &str, hash: &str) -> StatusReport {
        StatusReport {
            push_id: push_id.into(),
            hash: hash.into(),
            state,
            error: String::new(),
            effective_hash: String::new(),
            applied_at_unix_s: 0,
        }
    }

    fn row(push_id: &str, push_hash: &str, state: TargetState) -> TargetRow {
        TargetRow {
            push_id: push_id.into(),
            push_hash: push_hash.into(),
            state,
        }
    }

    fn answered(state: TargetState) -> ReportContext {
        ReportContext {
            answered: Some(row("p1", "hash-one", state)),
            desired: None,
        }
    }

    fn states(d: &ReportDecision) -> Vec<(&str, TargetState, &str, Evidence)> {
        d.targets
            .iter()
            .map(|t| (t.push_id.as_str(), t.state, t.error.as_str(), t.via))
            .collect()
    }

    #[test]
    fn applied_with_the_pushed_hash_applies_the_target() {
        let d = judge_report(
            &report(ReportedState::Applied, "p1", "hash-one"),
            &answered(TargetState::Applying),
        );
        assert_eq!(
            states(&d),
            vec![("p1", TargetState::Applied, "", Evidence::ConfigStatus)]
        );
        assert_eq!(d.targets[0].reported_hash, "hash-one");
        // An applied report with no effective hash names the hash it runs.
        assert_eq!(d.effective_hash.as_deref(), Some("hash-one"));
    }

    #[test]
    fn applied_with_another_hash_fails_the_target_and_names_both() {
        let d = judge_report(
            &report(ReportedState::Applied, "p1", "0123456789abcdef"),
            &answered(TargetState::Applying),
        );
        assert_eq!(
            states(&d),
            vec![(
                "p1",
                TargetState::Failed,
                "the agent reported hash 0123456789ab but the push carries hash-one",
                Evidence::ConfigStatus
            )]
        );
    }

    #[test]
    fn failed_keeps_the_agents_reason_or_says_there_was_none() {
        let mut r = report(ReportedState::Failed, "p1", "hash-one");
        let d = judge_report(&r, &answered(TargetState::Applying));
        assert_eq!(
            d.targets[0].error,
            "the agent reported FAILED without a reason"
        );
        assert_eq!(d.targets[0].state, TargetState::Failed);
        r.error = "exporters.file: not allowed".into();
        let d = judge_report(&r, &answered(TargetState::Applying));
        assert_eq!(
            (d.targets[0].state, d.targets[0].error.as_str()),
            (TargetState::Failed, "exporters.file: not allowed")
        );
        // A failure says nothing about what runs.
        assert_eq!(d.effective_hash, None);
    }

    #[test]
    fn applying_moves_the_target_and_unspecified_leaves_it() {
        let d = judge_report(
            &report(ReportedState::Applying, "p1", "hash-one"),
            &answered(TargetState::Pending),
        );
        assert_eq!(
            states(&d),
            vec![("p1", TargetState::Applying, "", Evidence::ConfigStatus)]
        );
        let d = judge_report(
            &report(ReportedState::Unspecified, "p1", "hash-one"),
            &answered(TargetState::Applying),
        );
        assert!(d.targets.is_empty(), "{d:?}");
    }

    #[test]
    fn a_late_answer_settles_a_timeout_but_a_superseded_target_stays() {
        let r = report(ReportedState::Applied, "p1", "hash-one");
        let d = judge_report(&r, &answered(TargetState::Timeout));
        assert_eq!(d.targets[0].state, TargetState::Applied);
        let d = judge_report(&r, &answered(TargetState::Superseded));
        assert!(d.targets.is_empty(), "{d:?}");
    }

    #[test]
    fn an_effective_hash_applies_only_an_open_desired_target_with_that_hash() {
        let mut r = report(ReportedState::Unspecified, "", "");
        r.effective_hash = "hash-two".into();
        let with = |state| ReportContext {
            answered: None,
            desired: Some(row("p2", "hash-two", state)),
        };
        for open in [
            TargetState::Pending,
            TargetState::Applying,
            TargetState::Timeout,
        ] {
            let d = judge_report(&r, &with(open));
            assert_eq!(
                states(&d),
                vec![("p2", TargetState::Applied, "", Evidence::EffectiveHash)],
                "{open:?}"
            );
            assert_eq!(d.targets[0].reported_hash, "hash-two");
        }
        for settled in [
            TargetState::Applied,
            TargetState::Failed,
            TargetState::Superseded,
        ] {
            assert!(
                judge_report(&r, &with(settled)).targets.is_empty(),
                "{settled:?}"
            );
        }
        // Another hash, or a report of failure: the agent does not run it.
        r.effective_hash = "hash-other".into();
        assert!(
            judge_report(&r, &with(TargetState::Applying))
                .targets
                .is_empty()
        );
        r.effective_hash = "hash-two".into();
        r.state = ReportedState::Failed;
        assert!(
            judge_report(&r, &with(TargetState::Applying))
                .targets
                .is_empty()
        );
        // The record learns what runs either way.
        assert_eq!(
            judge_report(&r, &with(TargetState::Applying))
                .effective_hash
                .as_deref(),
            Some("hash-two")
        );
    }

    #[test]
    fn the_catch_up_sees_the_desired_target_as_the_answer_left_it() {
        // The answer failed the desired target (wrong hash applied), though
        // the effective hash is the push's: the failure stands.
        let mut r = report(ReportedState::Applied, "p2", "hash-wrong");
        r.effective_hash = "hash-two".into();
        let rows = ReportContext {
            answered: Some(row("p2", "hash-two", TargetState::Applying)),
            desired: Some(row("p2", "hash-two", TargetState::Applying)),
        };
        let d = judge_report(&r, &rows);
        assert_eq!(d.targets.len(), 1, "{d:?}");
        assert_eq!(d.targets[0].state, TargetState::Failed);
        // An answer to an older push, then the desired one caught up.
        let rows = ReportContext {
            answered: Some(row("p1", "hash-wrong", TargetState::Timeout)),
            desired: Some(row("p2", "hash-two", TargetState::Pending)),
        };
        let d = judge_report(&r, &rows);
        assert_eq!(
            states(&d),
            vec![
                ("p1", TargetState::Applied, "", Evidence::ConfigStatus),
                ("p2", TargetState::Applied, "", Evidence::EffectiveHash)
            ]
        );
    }

    #[test]
    fn without_a_push_id_no_target_is_answered() {
        let r = report(ReportedState::Failed, "", "hash-one");
        assert!(
            judge_report(&r, &answered(TargetState::Applying))
                .targets
                .is_empty()
        );
    }

    #[test]
    fn the_desired_config_is_offered_unless_run_refused_or_replaced() {
        let offer = |state, effective| offer_desired(&row("p", "hash-one", state), effective);
        assert_eq!(
            offer(TargetState::Pending, "hash-old"),
            Offer::Send {
                mark_applying: true
            }
        );
        for resent in [
            TargetState::Applying,
            TargetState::Timeout,
            TargetState::Applied,
        ] {
            assert_eq!(
                offer(resent, "hash-old"),
                Offer::Send {
                    mark_applying: false
                },
                "{resent:?}"
            );
        }
        assert_eq!(offer(TargetState::Pending, "hash-one"), Offer::Nothing);
        assert_eq!(offer(TargetState::Failed, "hash-old"), Offer::Nothing);
        assert_eq!(offer(TargetState::Superseded, "hash-old"), Offer::Nothing);
    }
}
