//! Who a request is, and what that lets it do: a [`Principal`] has a
//! [`Role`] (a fixed set of [`Permission`]s) and optionally a [`Scope`]
//! (the agents, and the templates, it may act on).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// What a request may do. The names are the API's: a 403 names the one
/// that is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Agents, pushes, experiments, templates; config and experiment
    /// validation (changes nothing).
    Read,
    /// The audit log and its verification.
    AuditRead,
    /// Push a config.
    PushCreate,
    /// Create, start, stop, promote and roll back experiments.
    ExperimentWrite,
    /// Revoke an agent's credential.
    AgentRevoke,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::AuditRead,
        Permission::PushCreate,
        Permission::ExperimentWrite,
        Permission::AgentRevoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::AuditRead => "audit.read",
            Permission::PushCreate => "pushes.create",
            Permission::ExperimentWrite => "experiments.write",
            Permission::AgentRevoke => "agents.revoke",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Roles, each a superset of the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, pushes, experiments and their actions (inside its scope).
    Operator,
    /// Everything: the audit log, revoking agents, the whole fleet.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::PushCreate | Permission::ExperimentWrite => self >= Role::Operator,
            Permission::AuditRead | Permission::AgentRevoke => self == Role::Admin,
        }
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of the fleet a principal may see and act on: agents carrying
/// every label of `labels` (none: the whole fleet), and when `templates`
/// is given, only those templates may be pushed (and no raw YAML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub templates: Option<BTreeSet<String>>,
}

impl Scope {
    /// Whether an agent with these labels is inside the scope.
    pub fn covers_agent(&self, agent_labels: &BTreeMap<String, String>) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| agent_labels.get(k) == Some(v))
    }

    /// Whether every agent a label selector can ever match is inside the
    /// scope: the selector must demand each of the scope's labels. This
    /// holds for agents that join later too, unlike checking today's
    /// matches.
    pub fn covers_selector(&self, selector: &BTreeMap<String, String>) -> bool {
        self.covers_agent(selector)
    }

    /// Whether the template `name` may be pushed.
    pub fn allows_template(&self, name: &str) -> bool {
        self.templates.as_ref().is_none_or(|t| t.contains(name))
    }

    /// Whether raw YAML (not a named template) may be pushed.
    pub fn allows_yaml(&self) -> bool {
        self.templates.is_none()
    }

    /// `team=payments,env=prod`, or `the whole fleet`.
    pub fn describe_labels(&self) -> String {
        if self.labels.is_empty() {
            return "the whole fleet".into();
        }
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bearer token of the auth file (or the single `--api-token`).
    Token,
    /// A bearer JWT from the OIDC issuer.
    Oidc,
    /// No credential: `--api-read-open` lets reads through.
    Open,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::Oidc => "oidc",
            Method::Open => "open",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// `None`: the whole fleet and every template.
    pub scope: Option<Scope>,
    pub method: Method,
}

impl Principal {
    pub fn allows(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }
}

/// Actors the controller itself writes into the audit log. No principal
/// can take these names: file principals may not contain `:` and may not be
/// a name below; OIDC principals are all `oidc:<subject>`.
pub mod system {
    /// The scheduler, guardrails and the reaper.
    pub const CONTROLLER: &str = "controller";
    /// A request that presented no valid credential.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// A read let through by `--api-read-open`.
    pub const ANONYMOUS: &str = "anonymous";
    /// `agent:<id>` acts for itself (enrollment, its own outcomes).
    pub const AGENT_PREFIX: &str = "agent:";
    /// `experiment:<id>` pushes its variants.
    pub const EXPERIMENT_PREFIX: &str = "experiment:";
    /// `oidc:<subject>`: a principal signed in through OIDC.
    pub const OIDC_PREFIX: &str = "oidc:";

    /// Names a principal of the auth file may not take.
    pub fn is_reserved(name: &str) -> bool {
        matches!(name, CONTROLLER | UNAUTHENTICATED | ANONYMOUS | "system") || name.contains(':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_nested() {
        assert_eq!(Role::Viewer.permissions(), vec![Permission::Read]);
        assert_eq!(
            Role::Operator.permissions(),
            vec![
                Permission::Read,
                Permission::PushCreate,
                Permission::ExperimentWrite
            ]
        );
        assert_eq!(Role::Admin.permissions(), Permission::ALL.to_vec());
    }

    #[test]
    fn scopes_cover_agents_and_selectors() {
        let scope = Scope {
            labels: [("team".to_string(), "payments".to_string())].into(),
            templates: Some(["lean".to_string()].into()),
        };
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(scope.covers_agent(&labels(&[("team", "payments"), ("env", "prod")])));
        assert!(!scope.covers_agent(&labels(&[("team", "search")])));
        assert!(!scope.covers_agent(&labels(&[])));
        // env=prod alone could match another team's agents.
        assert!(!scope.covers_selector(&labels(&[("env", "prod")])));
        assert!(scope.covers_selector(&labels(&[("team", "payments"), ("env", "prod")])));
        assert!(scope.allows_template("lean"));
        assert!(!scope.allows_template("baseline"));
        assert!(!scope.allows_yaml());
        assert!(Scope::default().allows_yaml());
        assert!(Scope::default().covers_selector(&labels(&[])));
    }

    #[test]
    fn reserved_names() {
        for name in ["controller", "anonymous", "agent:a", "oidc:x", "a:b"] {
            assert!(system::is_reserved(name), "{name}");
        }
        assert!(!system::is_reserved("ana"));
    }
}
