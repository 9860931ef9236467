//! `aggregate` in `track_children` mode: every process is folded into its
//! nearest ancestor that matches a rule (the workers of a web server, the
//! children of a script), so a service reads as one resource whatever it
//! forks.
//!
//! ```yaml
//! aggregate/workers:
//!   track_children:
//!     - { executable_name: "^(nginx|gunicorn|postgres)$" }
//!     - { command_line: "^/bin/bash /opt/run\\.sh" }
//! ```
//!
//! A rule's regexes (at least one) must all match, on
//! `process.executable.name` and `process.command_line`; a missing
//! attribute fails the rule. Ancestry is read from the integer resource
//! attributes `process.pid` and `process.parent_pid` of the same batch, so
//! this must run before an `attributes` processor deletes or hashes them.
//!
//! - A process matching no rule is folded into the group of its nearest
//!   matching ancestor; without one in the batch it passes through
//!   untouched.
//! - A matching process whose nearest matching ancestor has the same
//!   `process.executable.name` belongs to that ancestor's group: a
//!   service's forks of itself (the nginx, gunicorn or postgres workers
//!   under their master, all matching the same regex) fold into the
//!   top-most of them.
//! - Any other matching process is the *root* of a group, even under
//!   another group: a `postgres` started by a matching script stays apart
//!   from the script, with its own workers. Roots are not folded further.
//! - An unprotected root's resource stays in its place with its attributes;
//!   its metrics become the combination of its own and its group's (the
//!   `functions` of group_by mode: sum by default, `process.uptime` max),
//!   and it carries `phoenix.process.count` (1 + what was folded; a folded
//!   rollup brings its own count). It does so even with no member this
//!   interval, so its series do not come and go with short-lived children.
//!   It becomes a rollup (no process identity; see `process` for why).
//! - Protection: a protected process (critical, or a priority in
//!   `protect`) is never folded nor changed. A protected root receives no
//!   members: its group stays individual.
//!
//! Parent links come from /proc and may be inconsistent (a pid reused
//! between two reads, hostile data): both walks below memoise what they
//! find, so they visit every resource at most once per batch (their depth
//! is bounded by the batch size), and a parent loop ends them. A loop of
//! non-matching processes has no ancestor; same-named matching processes
//! in a loop each root their own group; nothing is its own ancestor. A pid
//! two resources claim is nobody's parent (which one would be is a guess,
//! and the answer must not depend on the order of the batch).

use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::AggregateFunction;
use crate::hash::IdMap;
use crate::model::{Batch, MetricDesc, Resource, Str, Value};
use crate::problem::Problem;
use crate::processors::rollup::Rollup;
use crate::processors::{Protection, compile_regex};
use crate::semconv;

/// One `track_children` rule: every regex given must match (at least one).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildrenRule {
    /// Regex on `process.executable.name`.
    #[serde(default)]
    pub executable_name: Option<String>,
    /// Regex on `process.command_line`.
    #[serde(default)]
    pub command_line: Option<String>,
}

#[derive(Debug)]
pub(super) struct Rule {
    executable_name: Option<Regex>,
    command_line: Option<Regex>,
}

impl Rule {
    fn matches(&self, name: Option<&str>, command_line: Option<&str>) -> bool {
        let ok = |re: &Option<Regex>, v: Option<&str>| match re {
            None => true,
            Some(re) => v.is_some_and(|v| re.is_match(v)),
        };
        ok(&self.executable_name, name) && ok(&self.command_line, command_line)
    }
}

/// Compile the rules, reporting every problem as `track_children...`.
pub(super) fn compile(rules: &[ChildrenRule], problems: &mut Vec<Problem>) -> Vec<Rule> {
    if rules.is_empty() {
        problems.push(Problem::sentence(
            "track_children",
            "is empty (give at least one rule, or leave it out to group by `group_by`)",
        ));
    }
    let mut compiled = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let mut regex = |name: &str, pattern: &Option<String>| {
            pattern
                .as_ref()
                .and_then(|p| compile_regex(&format!("track_children[{i}].{name}"), p, problems))
        };
        let executable_name = regex("executable_name", &rule.executable_name);
        let command_line = regex("command_line", &rule.command_line);
        if rule.executable_name.is_none() && rule.command_line.is_none() {
            problems.push(Problem::sentence(
                format!("track_children[{i}]"),
                "has no condition (give `executable_name`, `command_line` or both)",
            ));
            continue;
        }
        compiled.push(Rule {
            executable_name,
            command_line,
        });
    }
    compiled
}

/// Whether a process matches a rule, remembered per process identity with
/// the strings it was decided on (an `exec` keeps the identity but changes
/// them). `==` on interned `Arc<str>` compares pointers first.
#[derive(Debug)]
struct Verdict {
    name: Option<Str>,
    command_line: Option<Str>,
    matched: bool,
    generation: u64,
}

/// What becomes of one resource of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Passes through untouched.
    Keep,
    /// The root of the group in `rollups[slot]`.
    Root(u32),
    /// Folded into the group in `rollups[slot]`.
    Fold(u32),
}

/// One memoised answer of a walk (an ancestor's index, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unvisited,
    /// On the path being walked: meeting it again means a parent loop.
    Visiting,
    Resolved(Option<u32>),
}

const NO_PARENT: u32 = u32::MAX;

/// The state of `track_children` mode. Every buffer is kept across
/// intervals so a steady batch allocates nothing but the folded roots.
#[derive(Debug)]
pub(super) struct Children {
    rules: Vec<Rule>,
    verdicts: IdMap<Verdict>,
    generation: u64,
    /// `process.pid` → index of the resource with it (`NO_PARENT` when
    /// several claim it).
    by_pid: IdMap<u32>,
    /// Per resource: index of its parent's resource or `NO_PARENT`.
    parent: Vec<u32>,
    /// Per resource: it matches a rule.
    matches: Vec<bool>,
    protected: Vec<bool>,
    /// Per resource: its nearest matching ancestor.
    link: Vec<Link>,
    /// Per matching resource: the root of its group.
    group: Vec<Link>,
    fate: Vec<Fate>,
    path: Vec<u32>,
    group_path: Vec<u32>,
    /// One per root; the first `live` are in use this batch.
    rollups: Vec<Rollup>,
}

fn str_attr<'a>(resource: &'a Resource, key: &str) -> Option<&'a Str> {
    match resource.attributes.get(key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn int_attr(resource: &Resource, key: &str) -> Option<i64> {
    match resource.attributes.get(key)? {
        Value::Int(v) => Some(*v),
        _ => None,
    }
}

impl Children {
    pub(super) fn new(rules: Vec<Rule>) -> Children {
        Children {
            rules,
            verdicts: IdMap::default(),
            generation: 0,
            by_pid: IdMap::default(),
            parent: Vec::new(),
            matches: Vec::new(),
            protected: Vec::new(),
            link: Vec::new(),
            group: Vec::new(),
            fate: Vec::new(),
            path: Vec::new(),
            group_path: Vec::new(),
            rollups: Vec::new(),
        }
    }

    fn matches_rule(&mut self, resource: &Resource) -> bool {
        let name = str_attr(resource, semconv::PROCESS_EXECUTABLE_NAME);
        let command_line = str_attr(resource, semconv::PROCESS_COMMAND_LINE);
        let decide = |rules: &[Rule]| {
            rules
                .iter()
                .any(|r| r.matches(name.map(|s| &**s), command_line.map(|s| &**s)))
        };
        let Some(identity) = resource.identity else {
            return decide(&self.rules);
        };
        if let Some(v) = self.verdicts.get_mut(&identity)
            && v.name.as_ref() == name
            && v.command_line.as_ref() == command_line
        {
            v.generation = self.generation;
            return v.matched;
        }
        let matched = decide(&self.rules);
        self.verdicts.insert(
            identity,
            Verdict {
                name: name.cloned(),
                command_line: command_line.cloned(),
                matched,
                generation: self.generation,
            },
        );
        matched
    }

    /// The nearest matching ancestor of resource `i` (which may be `i`
    /// itself through a parent loop: the caller checks).
    fn ancestor(&mut self, i: usize) -> Option<u32> {
        self.path.clear();
        let mut current = i;
        let found = loop {
            match self.link[current] {
                Link::Resolved(found) => break found,
                // Back on the path: a loop of non-matching processes (one
                // its own parent included) has no ancestor.
                Link::Visiting => break None,
                Link::Unvisited => {}
            }
            self.link[current] = Link::Visiting;
            self.path.push(current as u32);
            let parent = self.parent[current];
            if parent == NO_PARENT {
                break None;
            }
            if self.matches[parent as usize] {
                break Some(parent);
            }
            current = parent as usize;
        };
        // Everything on the path (non-matching but for `i`) has the same
        // nearest matching ancestor: the first match above the path's top.
        for &j in &self.path {
            self.link[j as usize] = Link::Resolved(found);
        }
        found
    }

    /// The root of the group of the matching resource `i`: up through
    /// nearest matching ancestors while they have the same executable name.
    fn root(&mut self, i: usize, resources: &[Resource]) -> u32 {
        let mut walked = std::mem::take(&mut self.group_path);
        walked.clear();
        let mut current = i;
        let root = loop {
            match self.group[current] {
                Link::Resolved(root) => break root.unwrap_or(current as u32),
                Link::Visiting => {
                    // A loop of same-named matching processes has no top:
                    // each one on it roots its own group, and what led into
                    // it joins the group of the process it led to.
                    let at = walked.iter().position(|&j| j as usize == current);
                    for &j in &walked[at.unwrap_or(0)..] {
                        self.group[j as usize] = Link::Resolved(Some(j));
                    }
                    walked.truncate(at.unwrap_or(0));
                    break current as u32;
                }
                Link::Unvisited => {}
            }
            self.group[current] = Link::Visiting;
            walked.push(current as u32);
            let name = |j: usize| str_attr(&resources[j], semconv::PROCESS_EXECUTABLE_NAME);
            let same_name = |a: usize| name(current).is_some() && name(a) == name(current);
            match self.ancestor(current) {
                Some(a) if a as usize != current && same_name(a as usize) => {
                    current = a as usize;
                }
                _ => break current as u32,
            }
        };
        for &j in &walked {
            self.group[j as usize] = Link::Resolved(Some(root));
        }
        self.group_path = walked;
        root
    }

    pub(super) fn process(
        &mut self,
        batch: &mut Batch,
        protection: &Protection,
        function: &dyn Fn(&MetricDesc) -> AggregateFunction,
        count_desc: &Arc<MetricDesc>,
    ) {
        self.generation += 1;
        let n = batch.resources.len();
        self.by_pid.clear();
        self.parent.clear();
        self.matches.clear();
        self.protected.clear();
        self.link.clear();
        self.link.resize(n, Link::Unvisited);
        self.fate.clear();
        for (i, resource) in batch.resources.iter().enumerate() {
            let matched = self.matches_rule(resource);
            self.matches.push(matched);
            self.protected.push(protection.covers(resource));
            if let Some(pid) = int_attr(resource, semconv::PROCESS_PID) {
                self.by_pid
                    .entry(pid as u64)
                    .and_modify(|first| *first = NO_PARENT)
                    .or_insert(i as u32);
            }
        }
        for resource in &batch.resources {
            let parent = int_attr(resource, semconv::PROCESS_PARENT_PID)
                .and_then(|ppid| self.by_pid.get(&(ppid as u64)).copied())
                .unwrap_or(NO_PARENT);
            self.parent.push(parent);
        }

        self.group.clear();
        self.group.resize(n, Link::Unvisited);
        self.fate.resize(n, Fate::Keep);
        // Roots first, so a slot is known before any member looks for it.
        let mut live = 0u32;
        for i in 0..n {
            if self.matches[i] && !self.protected[i] && self.root(i, &batch.resources) as usize == i
            {
                self.fate[i] = Fate::Root(live);
                live += 1;
            }
        }
        for i in 0..n {
            if self.protected[i] || self.fate[i] != Fate::Keep {
                continue;
            }
            let root = if self.matches[i] {
                Some(self.root(i, &batch.resources))
            } else {
                self.ancestor(i)
                    .map(|a| self.root(a as usize, &batch.resources))
            };
            // A protected root is `Keep`: its group stays individual.
            if let Some(root) = root
                && let Fate::Root(slot) = self.fate[root as usize]
            {
                self.fate[i] = Fate::Fold(slot);
            }
        }

        let live = live as usize;
        if self.rollups.len() < live {
            self.rollups.resize_with(live, Rollup::default);
        }
        // Each root before its children, so a group lists its root's
        // metrics in the root's order.
        for (resource, fate) in batch.resources.iter().zip(&self.fate) {
            if let Fate::Root(slot) = *fate {
                self.rollups[slot as usize].add(resource, function);
            }
        }
        for (resource, fate) in batch.resources.iter().zip(&self.fate) {
            if let Fate::Fold(slot) = *fate {
                self.rollups[slot as usize].add(resource, function);
            }
        }

        let mut i = 0;
        let fates = &self.fate;
        let rollups = &mut self.rollups;
        batch.resources.retain_mut(|resource| {
            let fate = fates[i];
            i += 1;
            match fate {
                Fate::Keep => true,
                Fate::Fold(_) => false,
                Fate::Root(slot) => {
                    // The root becomes a rollup (identity `None`): its
                    // metrics are no longer one process's, and everything
                    // after this processor reads an identity as "exactly this
                    // process" (the agent's coverage and top-N checks, the
                    // verdict caches keyed by it). As a rollup it is never
                    // sampled out (it carries its children's totals), and
                    // topk/budget follow it by its attributes (pid, name,
                    // command line), which stay the same while the process
                    // lives. A matching process is a root even with no child
                    // this interval, so its identity and series do not come
                    // and go with short-lived children.
                    let attributes = std::mem::take(&mut resource.attributes);
                    *resource = rollups[slot as usize].finish(attributes, count_desc);
                    true
                }
            }
        });
        // Drop pooled rollups beyond what this interval needed.
        self.rollups.truncate(live.max(16));
        if self.verdicts.len() > 2 * n + 64 {
            let generation = self.generation;
            self.verdicts.retain(|_, v| v.generation == generation);
        }
    }
}
