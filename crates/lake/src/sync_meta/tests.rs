use super::*;

fn loc(dir: &tempfile::TempDir, name: &str) -> TableLocation {
    TableLocation::parse(dir.path().join(name).to_str().unwrap()).unwrap()
}

fn config(name: &str, workflow: Option<&str>, tables: &[&str]) -> GroupConfigRow {
    GroupConfigRow {
        group_name: name.into(),
        workflow: workflow.map(Into::into),
        tables: tables.iter().map(|t| t.to_string()).collect(),
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[tokio::test]
async fn ensure_creates_both_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (loc(&dir, "primary/meta"), loc(&dir, "secondary/meta"));
    ensure(&p, &s).await.unwrap();
    assert!(read(&p).await.unwrap().is_empty());
    assert!(read(&s).await.unwrap().is_empty());
    // Again: nothing to do.
    ensure(&p, &s).await.unwrap();
    let info = crate::inspect::table_info(&p, None).await.unwrap();
    assert_eq!(info.version, 0);
    let names: Vec<&str> = info.columns.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "group_name",
            "workflow",
            "tables",
            "date_created",
            "date_updated",
            "sync_start_timestamp",
            "sync_end_timestamp",
            "current_sync_status",
            "message"
        ]
    );
}

#[tokio::test]
async fn ensure_copies_the_table_that_exists_into_the_other_region() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (loc(&dir, "primary/meta"), loc(&dir, "secondary/meta"));
    create(&s).await.unwrap();
    let now = at("2026-11-29T10:00:00.123456Z");
    merge_config(&s, &[config("core", Some("job"), &["a.b", "c.*"])], now)
        .await
        .unwrap();
    ensure(&p, &s).await.unwrap();
    assert_eq!(read(&p).await.unwrap(), read(&s).await.unwrap());
    assert_eq!(read(&p).await.unwrap()[0].tables, ["a.b", "c.*"]);
    // And the other way round.
    std::fs::remove_dir_all(dir.path().join("secondary")).unwrap();
    ensure(&p, &s).await.unwrap();
    assert_eq!(read(&s).await.unwrap(), read(&p).await.unwrap());
    // Both are writable afterwards.
    set_status(&s, "core", IN_PROGRESS, None, None, None, true)
        .await
        .unwrap();
    assert_eq!(read(&s).await.unwrap()[0].current_sync_status, IN_PROGRESS);
}

#[tokio::test]
async fn merge_updates_config_and_keeps_status_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (loc(&dir, "p"), loc(&dir, "s"));
    ensure(&p, &s).await.unwrap();
    let t0 = at("2026-11-29T10:00:00Z");
    merge_config(
        &p,
        &[
            config("core", Some("core_job"), &["core_raw", "core_silver"]),
            config("sched", None, &["t_a"]),
        ],
        t0,
    )
    .await
    .unwrap();
    let rows = read(&p).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].group_name, "core");
    assert_eq!(rows[0].current_sync_status, NEVER);
    assert_eq!((rows[0].date_created, rows[0].date_updated), (t0, t0));
    assert_eq!(rows[1].workflow, None);

    let (start, end) = (at("2026-11-29T11:00:00Z"), at("2026-11-29T11:05:00.5Z"));
    set_status(
        &p,
        "core",
        SUCCESS,
        Some(start),
        Some(end),
        Some("ok"),
        false,
    )
    .await
    .unwrap();
    let before = crate::inspect::table_info(&p, None).await.unwrap().version;
    // The same config again: nothing committed.
    merge_config(
        &p,
        &[config(
            "core",
            Some("core_job"),
            &["core_raw", "core_silver"],
        )],
        at("2026-11-29T12:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        crate::inspect::table_info(&p, None).await.unwrap().version,
        before
    );
    // A changed config: config columns and date_updated change, status columns stay.
    let t2 = at("2026-11-29T13:00:00Z");
    merge_config(
        &p,
        &[
            config("core", None, &["core_raw", "core_gold"]),
            config("new", Some("w"), &["x"]),
        ],
        t2,
    )
    .await
    .unwrap();
    let rows = read(&p).await.unwrap();
    let core = &rows[0];
    assert_eq!(core.workflow, None);
    assert_eq!(core.tables, ["core_raw", "core_gold"]);
    assert_eq!((core.date_created, core.date_updated), (t0, t2));
    assert_eq!(core.current_sync_status, SUCCESS);
    assert_eq!(core.sync_start_timestamp, Some(start));
    assert_eq!(core.sync_end_timestamp, Some(end));
    assert_eq!(core.message.as_deref(), Some("ok"));
    assert_eq!(rows[1].group_name, "new");
    assert_eq!(rows[1].current_sync_status, NEVER);
    assert_eq!(
        rows[2].group_name, "sched",
        "groups not configured are kept"
    );
    // Bad input.
    let err = merge_config(
        &p,
        &[config("a", None, &["x"]), config("a", None, &["y"])],
        t2,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    assert!(
        merge_config(&p, &[config("a", None, &["x,y"])], t2)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn set_status_round_trips_and_failed_keeps_the_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (loc(&dir, "p"), loc(&dir, "s"));
    ensure(&p, &s).await.unwrap();
    merge_config(&s, &[config("g", None, &["t"])], at("2026-11-29T09:00:00Z"))
        .await
        .unwrap();
    let (start, end) = (
        at("2026-11-29T10:00:00.000001Z"),
        at("2026-11-29T10:01:00Z"),
    );
    set_status(&s, "g", IN_PROGRESS, Some(start), None, None, true)
        .await
        .unwrap();
    let row = read(&s).await.unwrap().remove(0);
    assert_eq!(row.current_sync_status, IN_PROGRESS);
    assert_eq!(row.sync_start_timestamp, None, "in progress keeps them");
    set_status(&s, "g", SUCCESS, Some(start), Some(end), None, false)
        .await
        .unwrap();
    let row = read(&s).await.unwrap().remove(0);
    assert_eq!(row.current_sync_status, SUCCESS);
    assert_eq!(row.sync_start_timestamp, Some(start));
    assert_eq!(row.sync_end_timestamp, Some(end));
    assert_eq!(row.message, None);
    assert!(row.date_updated > row.date_created);
    // A failed sync: status and message change, the last good cut's timestamps stay.
    set_status(
        &s,
        "g",
        FAILED,
        Some(at("2026-11-29T12:00:00Z")),
        Some(at("2026-11-29T12:01:00Z")),
        Some("table t: boom"),
        true,
    )
    .await
    .unwrap();
    let row = read(&s).await.unwrap().remove(0);
    assert_eq!(row.current_sync_status, FAILED);
    assert_eq!(row.message.as_deref(), Some("table t: boom"));
    assert_eq!(row.sync_start_timestamp, Some(start));
    assert_eq!(row.sync_end_timestamp, Some(end));
    // Errors: unknown status, unknown group.
    let err = set_status(&s, "g", "done", None, None, None, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a sync status"), "{err}");
    let err = set_status(&s, "nope", FAILED, None, None, None, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
}

#[tokio::test]
async fn a_concurrent_writer_is_a_transient_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (loc(&dir, "p"), loc(&dir, "s"));
    ensure(&p, &s).await.unwrap();
    merge_config(&p, &[config("g", None, &["t"])], at("2026-11-29T09:00:00Z"))
        .await
        .unwrap();
    // Two writers read version 1; the first to commit wins, the second conflicts.
    let (v, rows) = read_at(&p).await.unwrap();
    let first = write(&p, v, &rows, "UPDATE", json!({})).await.unwrap();
    assert_eq!(first, v + 1);
    let err = write(&p, v, &rows, "UPDATE", json!({})).await.unwrap_err();
    assert!(matches!(err, LakeError::CommitConflict { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(read(&p).await.unwrap(), rows);
}
