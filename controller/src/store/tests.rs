use super::*;

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("phoenix-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn hello(id: &str, env: &str) -> AgentHello {
    AgentHello {
        id: id.into(),
        host_name: format!("{id}.host"),
        version: "1".into(),
        labels: [("env".to_string(), env.to_string())].into(),
        capabilities: vec![],
        status: None,
        policy: None,
    }
}

fn push(id: &str, hash: &str, selector: Selector) -> NewPush {
    NewPush {
        id: id.into(),
        selector,
        yaml: format!("# {hash}"),
        hash: hash.into(),
        template: None,
        actor: Actor::system("t"),
        deadline: 1_000,
        revert_to_local: false,
        experiment_id: None,
        within: None,
        config_kind: ConfigKind::Phoenix,
        content_type: "text/yaml".into(),
        file: String::new(),
    }
}

#[test]
fn migrations_run_once_and_reopening_keeps_the_data() {
    let dir = tmp_dir("migrate");
    {
        let s = Store::open_dir(&dir).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    }
    let s = Store::open_dir(&dir).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.list_agents(&Default::default(), None).unwrap().len(), 1);
    let mode: String = s
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A database in `dir` at schema `version`, as a controller of that
/// release left it.
fn at_schema(dir: &std::path::Path, version: i64) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let mut conn = Connection::open(dir.join("controller.db")).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
        tx.execute_batch(sql).unwrap();
        tx.execute("INSERT INTO schema_version VALUES (?1, 0)", [v])
            .unwrap();
    }
    tx.commit().unwrap();
    conn
}

#[test]
fn agents_stored_before_config_kinds_get_theirs_from_their_description() {
    let dir = tmp_dir("migrate-11");
    {
        let conn = at_schema(&dir, 10);
        conn.execute_batch(
            r#"INSERT INTO agents (id, host_name, version, capabilities, status, first_seen, last_seen)
                   VALUES ('native', 'h', '1', '[]', 'offline', 1, 1);
               INSERT INTO agents (id, kind, host_name, version, capabilities, status, first_seen,
                   last_seen, opamp_description)
                   VALUES ('phoenix-over-opamp', 'opamp', 'h', '1', '[]', 'offline', 1, 1,
                       '{"identifying": {"service.name": "phoenix-agent"}, "non_identifying": {}}'),
                          ('named-only-loosely', 'opamp', 'h', '1', '[]', 'offline', 1, 1,
                       '{"identifying": {}, "non_identifying": {"service.name": "phoenix-agent"}}'),
                          ('undescribed', 'opamp', 'h', '1', '[]', 'offline', 1, 1, NULL);"#,
        )
        .unwrap();
    }
    let s = Store::open_dir(&dir).unwrap();
    let kind = |id: &str| s.agent(id).unwrap().unwrap().0.config_kind;
    assert_eq!(kind("native"), ConfigKind::Phoenix);
    assert_eq!(kind("phoenix-over-opamp"), ConfigKind::Phoenix);
    assert_eq!(kind("named-only-loosely"), ConfigKind::Opaque);
    assert_eq!(kind("undescribed"), ConfigKind::Opaque);
}

#[test]
fn rebuilding_the_experiments_table_keeps_every_row_that_references_it() {
    // A database at schema 7 with an experiment and its history, as a
    // controller of the previous release left it.
    let dir = tmp_dir("migrate-8");
    {
        let mut conn = at_schema(&dir, 7);
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            "INSERT INTO experiments (id, name, spec, state, author, config, config_hash,
                 created_at, updated_at) VALUES ('e', 'e', '{}', 'succeeded', 't', '', 'h', 1, 1);
             INSERT INTO experiment_transitions (experiment_id, at, from_state, to_state, actor, reason)
                 VALUES ('e', 1, 'analyzing', 'succeeded', 't', 'won');",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Store::open_dir(&dir).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    // Dropping the old table did not cascade into its history.
    assert_eq!(s.transitions("e").unwrap().len(), 1);
    assert_eq!(
        s.experiment("e").unwrap().unwrap().state.as_str(),
        "succeeded"
    );
    // The new state is allowed, and foreign keys are on again.
    s.conn()
        .execute(
            "UPDATE experiments SET state = 'promoting' WHERE id = 'e'",
            [],
        )
        .unwrap();
    let on: i64 = s
        .conn()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(on, 1);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tmp_dir("too-new");
    {
        let s = Store::open_dir(&dir).unwrap();
        s.conn()
            .execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)",
                [],
            )
            .unwrap();
    }
    assert!(matches!(
        Store::open_dir(&dir),
        Err(StoreError::TooNew { found: 999, .. })
    ));
}

#[test]
fn pushes_dedupe_config_versions_and_time_out_open_targets() {
    let dir = tmp_dir("push");
    let s = Store::open_dir(&dir).unwrap();
    s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    s.hello(&hello("b", "dev"), 1, 1, true).unwrap();
    let prod: std::collections::BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    let (targets, _) = s
        .create_push(
            &push("p1", "h1", Selector::Labels(prod.clone())),
            10,
            &|_| Ok(()),
        )
        .unwrap();
    assert_eq!(targets, vec!["a".to_string()]);
    let (_, superseded) = s
        .create_push(&push("p2", "h1", Selector::Labels(prod)), 20, &|_| Ok(()))
        .unwrap();
    assert_eq!(superseded, 1);
    let versions: i64 = s
        .conn()
        .query_row("SELECT COUNT(*) FROM config_versions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 1);
    assert!(matches!(
        s.create_push(
            &push("p3", "h2", Selector::Agents(vec!["zz".into()])),
            30,
            &|_| Ok(())
        ),
        Err(CreatePushError::UnknownAgents(_))
    ));
    let changes = s.expire_pushes(2_000).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].push_id, "p2");
    assert_eq!(s.push("p2", None).unwrap().unwrap().counts.timeout, 1);
    assert_eq!(s.push("p1", None).unwrap().unwrap().counts.superseded, 1);
}

#[test]
fn an_old_session_ending_does_not_take_a_newer_one_offline() {
    let dir = tmp_dir("sessions");
    let s = Store::open_dir(&dir).unwrap();
    s.hello(&hello("a", "prod"), 100, 100, true).unwrap();
    s.hello(&hello("a", "prod"), 200, 200, true).unwrap();
    s.set_offline("a", 100).unwrap();
    let (a, _) = s.agent("a").unwrap().unwrap();
    assert_eq!(a.status, AgentStatus::Online);
    s.set_offline("a", 200).unwrap();
    let (a, _) = s.agent("a").unwrap().unwrap();
    assert_eq!(a.status, AgentStatus::Offline);
}

#[test]
fn a_push_its_check_refuses_stores_nothing_and_the_check_sees_each_policy() {
    let dir = tmp_dir("admit");
    let s = Store::open_dir(&dir).unwrap();
    let mut with_policy = hello("a", "prod");
    with_policy.policy = Some(AgentPolicy {
        policy: phoenix_config::RemotePolicy::default(),
        root_path: "/".into(),
        telemetry: Some(phoenix_config::TelemetryConfig::default()),
    });
    s.hello(&with_policy, 1, 1, true).unwrap();
    s.hello(&hello("b", "prod"), 1, 1, true).unwrap();
    let prod: std::collections::BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    let seen = std::cell::RefCell::new(Vec::new());
    let refused = s.create_push(&push("p1", "h1", Selector::Labels(prod)), 10, &|targets| {
        seen.borrow_mut().extend(targets.iter().cloned());
        Err(CreatePushError::NoMatch("refused by the check".into()))
    });
    assert!(matches!(refused, Err(CreatePushError::NoMatch(_))));
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 2);
    let reported: AgentPolicy = serde_json::from_str(seen[0].1.as_deref().unwrap()).unwrap();
    assert_eq!(Some(reported), with_policy.policy);
    assert_eq!(seen[1], ("b".to_string(), None));
    let pushes: i64 = s
        .conn()
        .query_row("SELECT COUNT(*) FROM pushes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pushes, 0, "nothing stored");
}

#[test]
fn the_audit_chain_names_the_first_entry_edited_removed_or_unchained() {
    let dir = tmp_dir("audit-chain");
    let s = Store::open_dir(&dir).unwrap();
    s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    let prod: std::collections::BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    for (i, id) in ["p1", "p2", "p3"].into_iter().enumerate() {
        s.create_push(
            &push(id, &format!("h{i}"), Selector::Labels(prod.clone())),
            10 + i as i64,
            &|_| Ok(()),
        )
        .unwrap();
    }
    let intact = s.verify_audit().unwrap();
    assert_eq!(intact.first_broken, None);
    assert!(intact.chained >= 3, "{intact:?}");
    let ids: Vec<i64> = {
        let conn = s.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM audit_log ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let edit = |sql: &str, id: i64| {
        s.conn().execute(sql, [id]).unwrap();
    };

    // An edited actor is found at its own entry.
    edit(
        "UPDATE audit_log SET actor = 'controller' WHERE id = ?1",
        ids[1],
    );
    let broken = s.verify_audit().unwrap().first_broken.expect("broken");
    assert_eq!(broken.0, ids[1]);
    assert!(broken.1.contains("changed"), "{broken:?}");

    // A removed entry is found at the one after it.
    edit("DELETE FROM audit_log WHERE id = ?1", ids[1]);
    let broken = s.verify_audit().unwrap().first_broken.expect("broken");
    assert_eq!(broken.0, ids[2]);
    assert!(broken.1.contains("removed or inserted"), "{broken:?}");

    // An entry without a hash inside the chain is refused too.
    s.conn()
        .execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (99, 'x', 'forged', '{}')",
            [],
        )
        .unwrap();
    let v = s.verify_audit().unwrap();
    assert!(v.first_broken.is_some());
}

#[test]
fn entries_from_before_the_chain_are_an_unchained_prefix() {
    let dir = tmp_dir("audit-legacy");
    let s = Store::open_dir(&dir).unwrap();
    s.conn()
        .execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (1, 'alice', 'push.created', '{}')",
            [],
        )
        .unwrap();
    s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    let prod: std::collections::BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    s.create_push(&push("p1", "h1", Selector::Labels(prod)), 10, &|_| Ok(()))
        .unwrap();
    let v = s.verify_audit().unwrap();
    assert_eq!(v.first_broken, None);
    assert_eq!(v.unchained, 1);
    assert!(v.chained >= 1);
}

#[test]
fn a_scoped_push_touches_nothing_outside_its_labels_and_reads_are_filtered() {
    let dir = tmp_dir("scoped");
    let s = Store::open_dir(&dir).unwrap();
    s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    s.hello(&hello("b", "dev"), 1, 1, true).unwrap();
    let prod: BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    let scoped = |id: &str, selector: Selector| NewPush {
        within: Some(prod.clone()),
        ..push(id, id, selector)
    };
    // Naming an agent outside the scope refuses the whole push.
    let refused = s.create_push(
        &scoped("p1", Selector::Agents(vec!["a".into(), "b".into()])),
        10,
        &|_| Ok(()),
    );
    assert!(
        matches!(&refused, Err(CreatePushError::OutOfScope(ids)) if ids == &["b".to_string()]),
        "{refused:?}"
    );
    // So does a label selector that reaches outside it.
    let everyone: BTreeMap<_, _> = BTreeMap::new();
    assert!(matches!(
        s.create_push(&scoped("p1", Selector::Labels(everyone)), 10, &|_| Ok(())),
        Err(CreatePushError::NoMatch(_) | CreatePushError::OutOfScope(_))
    ));
    assert!(s.push("p1", None).unwrap().is_none(), "nothing was stored");
    let audited = s.audit_log(None, 10).unwrap();
    assert!(audited.is_empty(), "{audited:?}");

    s.create_push(
        &scoped("p2", Selector::Agents(vec!["a".into()])),
        11,
        &|_| Ok(()),
    )
    .unwrap();
    s.create_push(
        &push("p3", "h3", Selector::Agents(vec!["b".into()])),
        12,
        &|_| Ok(()),
    )
    .unwrap();
    let ids = |within: Option<&BTreeMap<String, String>>| -> Vec<String> {
        s.list_pushes(10, within)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(None), ["p3", "p2"]);
    assert_eq!(ids(Some(&prod)), ["p2"]);
    assert!(s.push("p3", Some(&prod)).unwrap().is_none());
    let p2 = s.push("p2", Some(&prod)).unwrap().unwrap();
    assert_eq!(p2.targets.len(), 1);

    // A push to both teams: the scoped reader sees its own target, and
    // counts that say nothing of the other team's.
    s.create_push(
        &push("p4", "h4", Selector::Agents(vec!["a".into(), "b".into()])),
        13,
        &|_| Ok(()),
    )
    .unwrap();
    let total =
        |c: &TargetCounts| c.pending + c.applying + c.applied + c.failed + c.timeout + c.superseded;
    assert_eq!(total(&s.push("p4", None).unwrap().unwrap().counts), 2);
    let scoped = s.push("p4", Some(&prod)).unwrap().unwrap();
    assert_eq!((scoped.targets.len(), total(&scoped.counts)), (1, 1));
    let listed = s.list_pushes(10, Some(&prod)).unwrap();
    assert_eq!(listed[0].id, "p4");
    assert_eq!(total(&listed[0].counts), 1);
}

#[test]
fn retention_prunes_only_exported_entries_and_the_chain_still_verifies() {
    let dir = tmp_dir("audit-retention");
    let s = Store::open_dir(&dir).unwrap();
    s.hello(&hello("a", "prod"), 1, 1, true).unwrap();
    let prod: BTreeMap<_, _> = [("env".to_string(), "prod".to_string())].into();
    for (i, id) in ["p1", "p2", "p3", "p4"].into_iter().enumerate() {
        let at = 10 * (i as i64 + 1);
        s.create_push(&push(id, id, Selector::Labels(prod.clone())), at, &|_| {
            Ok(())
        })
        .unwrap();
    }
    let all = s.audit_after(0, 100).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(s.audit_export_cursor("-").unwrap(), 0);

    // Due: the first three (before t=35); exported: only the first two.
    s.set_audit_export_cursor("-", all[1].id).unwrap();
    let pruned = s.prune_audit(35, Some(all[1].id), 100).unwrap().unwrap();
    assert_eq!(pruned.through_id, all[1].id);
    assert_eq!(pruned.entries, 2);
    let left = s.audit_after(0, 100).unwrap();
    assert_eq!(left[0].id, all[2].id, "unexported entries stay");
    assert_eq!(left.last().unwrap().action, "audit.pruned");
    let v = s.verify_audit().unwrap();
    assert_eq!(v.first_broken, None, "{v:?}");
    assert_eq!(v.pruned_through, Some(all[1].id));
    assert!(
        s.prune_audit(5, None, 101).unwrap().is_none(),
        "nothing due"
    );

    // A second pruning moves the anchor; the chain still holds.
    s.prune_audit(35, None, 102).unwrap().unwrap();
    assert_eq!(s.verify_audit().unwrap().first_broken, None);

    // Deleting the oldest remaining entry by hand is still caught.
    let first = s.audit_after(0, 1).unwrap()[0].id;
    s.conn()
        .execute("DELETE FROM audit_log WHERE id = ?1", [first])
        .unwrap();
    let broken = s.verify_audit().unwrap().first_broken.expect("broken");
    assert!(broken.0 > first, "{broken:?}");
}
