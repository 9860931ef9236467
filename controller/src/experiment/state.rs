//! The experiment lifecycle. Every change goes through [`State::can_go`]:
//! the store refuses anything else, and applies a change only if the state
//! is still the one the caller saw, so concurrent requests on one
//! experiment leave one consistent history.
//!
//! ```text
//! draft ─start─▶ pending ─(start time)─▶ deploying ─(all applied)─▶ running ─(window over)─▶ analyzing
//!                                            │                        │                        │
//!                                            ▼ deploy failed          ▼ guardrail              ├─▶ succeeded ─▶ promoted
//!                                          failed ──(rollback)──▶ rolled_back ◀────────────────┴─▶ failed
//! draft, pending, deploying, running ─stop─▶ cancelled (after restoring what was deployed)
//! succeeded, promoted ─rollback─▶ rolled_back
//! ```

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Pending,
    Deploying,
    Running,
    Analyzing,
    Succeeded,
    Failed,
    Promoted,
    RolledBack,
    Cancelled,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Draft,
        State::Pending,
        State::Deploying,
        State::Running,
        State::Analyzing,
        State::Succeeded,
        State::Failed,
        State::Promoted,
        State::RolledBack,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Pending => "pending",
            State::Deploying => "deploying",
            State::Running => "running",
            State::Analyzing => "analyzing",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Promoted => "promoted",
            State::RolledBack => "rolled_back",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_go(self, to: State) -> bool {
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
                | (Succeeded, RolledBack)
                | (Failed, RolledBack)
                | (Promoted, RolledBack)
        )
    }

    /// The controller acts on these on its own (the scheduler's work).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Pending | State::Deploying | State::Running | State::Analyzing
        )
    }

    /// The targets run the experiment's config (a stop or rollback has
    /// something to restore).
    pub fn has_deployed(self) -> bool {
        matches!(
            self,
            State::Deploying | State::Running | State::Analyzing | State::Succeeded | State::Failed
        )
    }

    /// Nothing more can happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::RolledBack | State::Cancelled)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }

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
        // Exactly the documented edges: 16 of the 100 pairs.
        let legal = State::ALL
            .iter()
            .flat_map(|a| State::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_go(*b))
            .count();
        assert_eq!(legal, 16);
        assert!(!State::Running.can_go(State::Promoted));
        assert!(!State::Failed.can_go(State::Promoted));
        assert!(!State::Draft.can_go(State::Running));
    }
}
