//! The experiment lifecycle. Every change goes through [`Lifecycle::can_go`]:
//! the store refuses anything else, and applies a change only if the state
//! is still the one the caller saw, so concurrent requests on one
//! experiment leave one consistent history.
//!
//! ```text
//! draft ─start─▶ pending ─(start time)─▶ deploying ─(all applied)─▶ running ─(window over)─▶ analyzing
//!                                            │                        │                        │
//!                                            ▼ deploy failed          ▼ no candidate left      ├─▶ succeeded ─▶ promoted
//!                                          failed ──(rollback)──▶ rolled_back ◀────────────────┴─▶ failed
//! draft, pending, deploying, running ─stop─▶ cancelled (after restoring what was deployed)
//! succeeded ─promote in waves─▶ promoting ─(every wave passed)─▶ promoted
//! succeeded, promoting, promoted ─rollback (or a failed wave)─▶ rolled_back
//! ```

use phoenix_api::ExperimentAction;
/// The states and their names are part of the API; the rules below are the
/// controller's.
pub use phoenix_api::ExperimentState as State;

/// The transition rules of [`State`].
pub trait Lifecycle: Copy {
    /// Whether `self → to` is a legal transition.
    fn can_go(self, to: State) -> bool;
    /// The targets run the experiment's config (a stop or rollback has
    /// something to restore).
    fn has_deployed(self) -> bool;
    /// Nothing more can happen.
    fn is_terminal(self) -> bool;
    /// What an operator may ask for in this state: each action whose
    /// target state is a legal next state.
    fn actions(self) -> Vec<ExperimentAction>;
}

impl Lifecycle for State {
    fn can_go(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Draft, Pending)
                | (Draft, Cancelled)
                | (Pending, Deploying)
                | (Pending, Cancelled)
                | (Deploying, Running)
                | (Deploying, Failed)
                | (Deploying, Cancelled)
                | (Running, Analyzing)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Analyzing, Succeeded)
                | (Analyzing, Failed)
                | (Succeeded, Promoted)
                | (Succeeded, Promoting)
                | (Succeeded, RolledBack)
                | (Promoting, Promoted)
                | (Promoting, RolledBack)
                | (Failed, RolledBack)
                | (Promoted, RolledBack)
        )
    }

    fn has_deployed(self) -> bool {
        matches!(
            self,
            State::Deploying
                | State::Running
                | State::Analyzing
                | State::Succeeded
                | State::Failed
                | State::Promoting
        )
    }

    fn is_terminal(self) -> bool {
        matches!(self, State::RolledBack | State::Cancelled)
    }

    fn actions(self) -> Vec<ExperimentAction> {
        ExperimentAction::ALL
            .into_iter()
            .filter(|a| self.can_go(a.target_state()))
            // promoting → promoted is the scheduler's, when the last wave
            // passed: promoting again is not a move anyone may ask for.
            .filter(|a| !(self == State::Promoting && *a == ExperimentAction::Promote))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_go_nowhere_and_nothing_returns_to_draft() {
        for from in State::ALL {
            assert!(!from.can_go(State::Draft));
            assert!(!from.can_go(from), "{from} → itself");
            if from.is_terminal() {
                for to in State::ALL {
                    assert!(!from.can_go(to), "{from} → {to}");
                }
            }
        }
        // Exactly the documented edges: 19 of the 121 pairs.
        let legal = State::ALL
            .iter()
            .flat_map(|a| State::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_go(*b))
            .count();
        assert_eq!(legal, 19);
        assert!(!State::Running.can_go(State::Promoted));
        assert!(!State::Failed.can_go(State::Promoted));
        assert!(!State::Draft.can_go(State::Running));
    }

    #[test]
    fn actions_are_the_legal_moves_the_dashboard_offers() {
        use ExperimentAction::*;
        let expected: [(State, &[ExperimentAction]); 11] = [
            (State::Draft, &[Start, Stop]),
            (State::Pending, &[Stop]),
            (State::Deploying, &[Stop]),
            (State::Running, &[Stop]),
            (State::Analyzing, &[]),
            (State::Succeeded, &[Promote, Rollback]),
            (State::Failed, &[Rollback]),
            (State::Promoting, &[Rollback]),
            (State::Promoted, &[Rollback]),
            (State::RolledBack, &[]),
            (State::Cancelled, &[]),
        ];
        for (state, actions) in expected {
            assert_eq!(state.actions(), actions, "{state}");
            // Offered exactly when the lifecycle allows where it leads (a
            // promotion in waves ends by the scheduler's move alone).
            for a in ExperimentAction::ALL {
                let scheduler_only = state == State::Promoting && a == Promote;
                assert_eq!(
                    actions.contains(&a),
                    state.can_go(a.target_state()) && !scheduler_only,
                    "{state} {a:?}"
                );
            }
        }
    }
}
