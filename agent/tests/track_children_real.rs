//! `aggregate` with `track_children` on a real process tree: a shell with
//! two `sleep` children and a `sleep` grandchild under a subshell, scraped
//! from the real `/proc`, comes out as one resource for the shell whose
//! process count and memory are the tree's, every other process untouched.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use phoenix_agent::receiver::procfs::{ProcfsConfig, ProcfsReceiver};
use phoenix_processors::{Batch, ProcessorConfig, Resource, Value};
use phoenix_telemetry::registry::Registry;

struct Tree(Child);

impl Drop for Tree {
    fn drop(&mut self) {
        // The shell's process group: the shell and every sleep under it.
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on a process group this test created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

fn pid_of(r: &Resource) -> Option<i64> {
    match r.attributes.get("process.pid") {
        Some(Value::Int(p)) => Some(*p),
        _ => None,
    }
}

fn parent_of(r: &Resource) -> Option<i64> {
    match r.attributes.get("process.parent_pid") {
        Some(Value::Int(p)) => Some(*p),
        _ => None,
    }
}

/// The tree's processes in `batch`: the root and all its descendants.
fn tree(batch: &Batch, root: i64) -> Vec<&Resource> {
    let mut members: Vec<&Resource> = batch
        .resources
        .iter()
        .filter(|r| pid_of(r) == Some(root))
        .collect();
    loop {
        let pids: Vec<i64> = members.iter().filter_map(|r| pid_of(r)).collect();
        let more: Vec<&Resource> = batch
            .resources
            .iter()
            .filter(|r| parent_of(r).is_some_and(|p| pids.contains(&p)))
            .filter(|r| !pids.contains(&pid_of(r).unwrap_or(-1)))
            .collect();
        if more.is_empty() {
            return members;
        }
        members.extend(more);
    }
}

fn metric(r: &Resource, name: &str) -> f64 {
    r.metric(name).map_or(0.0, |m| m.total())
}

#[test]
fn a_shell_and_its_descendants_become_one_resource() {
    // A script name no other test uses, so its rule matches only this tree.
    let script =
        "exec -a phoenix-track-root sh -c 'sleep 600 & sleep 600 & (sleep 600 & wait) & wait'";
    let mut command = Command::new("bash");
    command.args(["-c", script]);
    // Its own process group, so that the whole tree is killed at the end.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = Tree(command.spawn().expect("spawn bash"));
    let root = i64::from(child.0.id());

    let mut receiver =
        ProcfsReceiver::new(&ProcfsConfig::default(), &Registry::new()).expect("receiver");
    // Wait until the whole tree is up: the root, two sleeps, the subshell
    // and its sleep, each past its exec. One scrape reads the processes one
    // after the other (the root first, its pid being the lowest): it may
    // read the root as the `bash` it was before its exec and still find
    // the children the exec'd shell started, so the root's command line is
    // part of the condition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let batch = loop {
        let batch = receiver.scrape();
        let members = tree(&batch, root);
        let str_attr = |r: &Resource, key: &str| match r.attributes.get(key) {
            Some(Value::Str(s)) => s.to_string(),
            _ => String::new(),
        };
        let root_execed = members.iter().any(|r| {
            pid_of(r) == Some(root)
                && str_attr(r, "process.command_line").starts_with("phoenix-track-root ")
        });
        let sleeping = members
            .iter()
            .filter(|r| str_attr(r, "process.executable.name") == "sleep")
            .count();
        if members.len() == 5 && root_execed && sleeping == 3 {
            break batch;
        }
        assert!(
            Instant::now() < deadline,
            "the tree never had 5 processes past their exec: {:?}",
            members
                .iter()
                .map(|r| (
                    pid_of(r),
                    parent_of(r),
                    str_attr(r, "process.executable.name"),
                    str_attr(r, "process.command_line")
                ))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let members = tree(&batch, root);
    let memory: f64 = members
        .iter()
        .map(|r| metric(r, "process.memory.usage"))
        .sum();
    // argv[0] (exec -a) names the tree; the subshell, a fork, has it too.
    let yaml = "track_children: [{ command_line: '^phoenix-track-root ' }]";
    let config: ProcessorConfig =
        ProcessorConfig::from_kind("aggregate", serde_norway::Deserializer::from_str(yaml))
            .expect("aggregate config");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let mut aggregate = config.build().expect("builds");
    let mut out = batch.clone();
    aggregate.process(&mut out);

    // The root stands for the five; nothing of the tree is left besides it.
    let roots: Vec<&Resource> = out
        .resources
        .iter()
        .filter(|r| pid_of(r) == Some(root))
        .collect();
    assert_eq!(roots.len(), 1, "one resource for the root");
    let folded = roots[0];
    assert_eq!(metric(folded, "phoenix.process.count"), 5.0);
    assert_eq!(metric(folded, "process.memory.usage"), memory);
    assert!(folded.identity.is_none(), "it stands for several processes");
    let leftover: Vec<i64> = members
        .iter()
        .filter_map(|m| pid_of(m))
        .filter(|p| *p != root)
        .filter(|p| out.resources.iter().any(|r| pid_of(r) == Some(*p)))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?} not folded");
    // Every process outside the tree is as it was.
    assert_eq!(out.resources.len(), batch.resources.len() - 4);
}
