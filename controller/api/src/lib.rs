//! The request and response bodies of the Phoenix controller's REST API
//! (`/api/v1/...`), defined once: the controller serializes them, and
//! `phoenixctl` and the tests deserialize them. Plain serde types, no
//! runtime: a field renamed here is renamed for every side at once, and a
//! client built against another shape fails to parse instead of reading
//! empty strings.
//!
//! Times are RFC 3339 strings (UTC, milliseconds), as the controller
//! formats them.

mod agents;
mod audit;
mod auth;
mod configs;
mod error;
mod experiments;
mod labels;
mod pushes;
mod templates;

pub use agents::{
    Agent, AgentConfig, AgentDetail, AgentEnrollment, AgentKind, AgentList, AgentResources,
    AgentRevoked, AgentStatus, ComponentHealth, ConfigFile, ConfigKind, DesiredConfig,
    EffectiveConfig, OpampAgent, OpampDescription, RemoteConfigStatus, RevokeAgentRequest,
};
pub use audit::{AuditEntry, AuditLog, AuditVerification, BrokenEntry};
pub use auth::{ScopeView, WhoAmI};
pub use configs::{ConfigProblem, ConfigValidation, ValidateConfigRequest};
pub use error::{ErrorBody, Health, ListedError, Readiness};
pub use experiments::{
    ActionRequest, Analysis, CandidateLoss, CandidateReport, CriterionResult, DefinitionRequest,
    Disqualification, DisqualificationEntry, Estimate, ExperimentAction, ExperimentDetail,
    ExperimentList, ExperimentReport, ExperimentResults, ExperimentState, ExperimentSummary,
    ExperimentTarget, FieldError, Headline, HeadlineCandidate, Kpis, MAX_WAVES, Outcome,
    PreviousSource, Promotion, RawMeasurement, ResultPoint, TransitionEntry, ValidationReport,
    VariantInfo, VariantRole, VariantSummary, Wave, WavePercent, WaveState,
};
pub use labels::parse_labels;
pub use pushes::{
    CreatePushRequest, CreatedTarget, DEFAULT_CONTENT_TYPE, Push, PushCounts, PushCreated,
    PushList, PushSelector, PushStatus, PushTarget, PushTargetState,
};
pub use templates::{Template, TemplateList};
