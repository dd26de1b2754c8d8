use super::*;
use crate::config::test_support::{MINIMAL, none};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn sync_config(section: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(&format!("{MINIMAL}sync:\n{section}"), none(), &[])
}

fn group(name: &str, tables: &[&str]) -> SyncGroup {
    SyncGroup {
        name: name.into(),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        ..SyncGroup::default()
    }
}

fn with_default(groups: Vec<SyncGroup>) -> SyncConfig {
    SyncConfig {
        default_schedule: Some("0 */12 * * *".into()),
        groups,
        ..SyncConfig::default()
    }
}

#[test]
fn the_documented_section_loads_with_its_defaults() {
    let c = sync_config(
        "  primary: ./lake/source\n  default_schedule: \"0 */12 * * *\"\n  notify: { success: [dr@example.com], failure: dr@example.com }\n  groups:\n    - name: core_product\n      owner: [mohit.singh@databricks.com]\n      tables: [core.core_raw, \"core.gold_*\"]\n      workflow: core_product_job\n      schedule: \"*/30 * * * *\"\n      rpo: 1h\n      retries: 5\n    - { name: other, owner: a@b.io, tables: [x.y] }\n",
    )
    .unwrap();
    let s = c.sync.as_ref().unwrap();
    assert_eq!(s.min_interval, Period(Duration::from_secs(1800)));
    assert_eq!(s.max_retries, 3);
    assert_eq!(s.notify.failure, vec!["dr@example.com".to_owned()]);
    let core = s.group("core_product").unwrap();
    assert_eq!(core.rpo, Some(Period(Duration::from_secs(3600))));
    assert_eq!(s.retries_of(core), 5);
    assert_eq!(s.schedule_of(core).unwrap().to_string(), "*/30 * * * *");
    let other = s.group("other").unwrap();
    assert_eq!(other.owner, vec!["a@b.io".to_owned()]);
    assert_eq!(s.retries_of(other), 3);
    assert_eq!(s.schedule_of(other).unwrap().to_string(), "0 */12 * * *");
    assert!(s.group("missing").is_none());
    assert!(s.check_groups().is_empty());
    assert_eq!(s.valid_groups().len(), 2);
    // Roots: its own, else the endpoints'; relative paths resolve like the roots.
    assert_eq!(s.primary_root(&c), "./lake/source");
    assert_eq!(s.secondary_root(&c), "./lake/target");
    let mut resolved = c.clone();
    resolved.resolve_paths(std::path::Path::new("/base"));
    assert_eq!(
        resolved.sync.as_ref().unwrap().primary.as_deref(),
        Some("/base/./lake/source")
    );
    // A config without the section has none; one round-trips through YAML.
    assert!(
        Config::from_yaml(MINIMAL, none(), &[])
            .unwrap()
            .sync
            .is_none()
    );
    let again = Config::from_yaml(&serde_yaml::to_string(&c).unwrap(), none(), &[]).unwrap();
    assert_eq!(again, c);
}

#[test]
fn the_section_refuses_only_its_own_errors() {
    for (section, key, words) in [
        (
            "  default_schedule: \"61 * * * *\"\n",
            "sync.default_schedule",
            "not a 5-field cron",
        ),
        (
            "  default_schedule: \"0 0 * * * *\"\n",
            "sync.default_schedule",
            "not a 5-field cron",
        ),
        (
            "  default_schedule: \"*/5 * * * *\"\n",
            "sync.default_schedule",
            "more often than sync.min_interval (30m)",
        ),
        (
            "  min_interval: 0\n",
            "sync.min_interval",
            "must be more than 0",
        ),
        ("  min_interval: 1w\n", "sync.min_interval", "unknown unit"),
        (
            "  notify: { failure: [not-an-address] }\n",
            "sync.notify.failure",
            "not an email address",
        ),
        (
            "  secondary: \" \"\n",
            "sync.secondary",
            "must not be empty",
        ),
        (
            "  groups: [ { name: a, tabels: [x] } ]\n",
            "sync.groups[0]",
            "tabels",
        ),
    ] {
        let err = sync_config(section).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("config key `{key}")) && err.contains(words),
            "{section}: {err}"
        );
    }
    // A lower minimum lets a frequent default through.
    assert!(sync_config("  default_schedule: \"*/5 * * * *\"\n  min_interval: 5m\n").is_ok());
    // Bad groups load: they are reported and skipped, not refused.
    let c = sync_config(
        "  groups: [ { name: \"\" }, { name: a, tables: [x], schedule: \"* * * * *\" } ]\n",
    )
    .unwrap();
    assert_eq!(c.sync.unwrap().check_groups().len(), 4);
}

#[test]
fn group_names_are_unique_and_not_empty() {
    let s = with_default(vec![
        group("a", &["x"]),
        group("b", &["y"]),
        group("a", &["z"]),
        group(" ", &["w"]),
    ]);
    let problems = s.check_groups();
    assert_eq!(
        problems,
        vec![
            ("a".to_owned(), "sync.groups[0].name: `a` is also the name of sync.groups[2]: group names must be unique".to_owned()),
            ("a".to_owned(), "sync.groups[2].name: `a` is also the name of sync.groups[0]: group names must be unique".to_owned()),
            ("groups[3]".to_owned(), "sync.groups[3].name: must not be empty".to_owned()),
        ]
    );
    let valid: Vec<&str> = s.valid_groups().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(valid, vec!["b"]);
}

#[test]
fn a_group_needs_tables() {
    let s = with_default(vec![
        group("none", &[]),
        group("blank", &["a", " "]),
        group("glob", &["a.["]),
    ]);
    let problems = s.check_groups();
    assert_eq!(
        problems[0],
        (
            "none".to_owned(),
            "sync.groups[0].tables: list at least one table".to_owned()
        )
    );
    assert_eq!(
        problems[1],
        (
            "blank".to_owned(),
            "sync.groups[1].tables: a table name must not be empty".to_owned()
        )
    );
    assert!(
        problems[2]
            .1
            .starts_with("sync.groups[2].tables: bad glob `a.[`"),
        "{problems:?}"
    );
    assert!(s.valid_groups().is_empty());
}

#[test]
fn a_group_needs_a_schedule_no_more_frequent_than_the_minimum() {
    let mut own = group("own", &["x"]);
    own.schedule = Some("*/30 * * * *".into());
    let mut fast = group("fast", &["x"]);
    fast.schedule = Some("*/5 * * * *".into());
    let mut bad = group("bad", &["x"]);
    bad.schedule = Some("every hour".into());
    let bare = group("bare", &["x"]);
    let s = SyncConfig {
        groups: vec![own, fast, bad, bare],
        ..SyncConfig::default()
    };
    let problems = s.check_groups();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, "fast");
    assert!(problems[0].1.starts_with("sync.groups[1].schedule: `*/5 * * * *` fires every 5m at times, more often than sync.min_interval (30m)"), "{problems:?}");
    assert!(
        problems[1]
            .1
            .starts_with("sync.groups[2].schedule: `every hour` is not a 5-field cron"),
        "{problems:?}"
    );
    assert_eq!(problems[2], ("bare".to_owned(), "sync.groups[3].schedule: needs a schedule: its own `schedule` or sync.default_schedule".to_owned()));
    let valid: Vec<&str> = s.valid_groups().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(valid, vec!["own"]);
    assert!(s.schedule_of(&s.groups[3]).is_none());
    // With a default, the bare group runs on it.
    let s = SyncConfig {
        default_schedule: Some("@hourly".into()),
        ..s
    };
    assert_eq!(s.valid_groups().len(), 2);
    assert_eq!(s.schedule_of(&s.groups[3]).unwrap().to_string(), "@hourly");
}

#[test]
fn owners_are_addresses_rpo_is_positive_workflow_not_blank() {
    let mut g = group("g", &["x"]);
    g.owner = vec!["ok@example.com".into(), "nobody".into()];
    g.rpo = Some(Period::default());
    g.workflow = Some(String::new());
    let s = with_default(vec![g]);
    let reasons: Vec<String> = s.check_groups().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        vec![
            "sync.groups[0].owner: `nobody` is not an email address",
            "sync.groups[0].workflow: must not be empty (leave it out for none)",
            "sync.groups[0].rpo: must be more than 0",
        ]
    );
    for (address, ok) in [
        ("a@b.io", true),
        ("first.last+dr@sub.example.com", true),
        ("a@b", false),
        ("@b.io", false),
        ("a b@c.io", false),
        ("a@.io", false),
    ] {
        assert_eq!(looks_like_email(address), ok, "{address}");
    }
}

#[test]
fn schedules_find_their_latest_and_next_ticks() {
    let s = Schedule::parse("0 */12 * * *").unwrap();
    assert_eq!(s.to_string(), "0 */12 * * *");
    assert_eq!(
        s.latest_at_or_before(at("2026-11-29T13:10:38Z")),
        Some(at("2026-11-29T12:00:00Z"))
    );
    // A tick is at or before itself; a fraction of a second after it still finds it.
    assert_eq!(
        s.latest_at_or_before(at("2026-11-29T12:00:00Z")),
        Some(at("2026-11-29T12:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2026-11-29T12:00:00.5Z")),
        Some(at("2026-11-29T12:00:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(at("2026-11-29T11:59:59Z")),
        Some(at("2026-11-29T00:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-11-29T12:00:00Z")),
        Some(at("2026-11-30T00:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-11-29T11:59:59.9Z")),
        Some(at("2026-11-29T12:00:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-12-31T23:00:00Z")),
        Some(at("2027-01-01T00:00:00Z"))
    );
    // Once a year: the last tick is within the look-back; a rarer one is not.
    let yearly = Schedule::parse("0 0 1 1 *").unwrap();
    assert_eq!(
        yearly.latest_at_or_before(at("2026-11-29T00:00:00Z")),
        Some(at("2026-01-01T00:00:00Z"))
    );
    let leap = Schedule::parse("0 0 29 2 *").unwrap();
    assert_eq!(leap.latest_at_or_before(at("2026-11-29T00:00:00Z")), None);
    assert_eq!(
        leap.next_after(at("2026-11-29T00:00:00Z")),
        Some(at("2028-02-29T00:00:00Z"))
    );
    // Names, aliases and whitespace.
    assert_eq!(Schedule::parse(" @daily ").unwrap().to_string(), "@daily");
    assert_eq!(
        Schedule::parse("30 6 * * MON")
            .unwrap()
            .next_after(at("2026-11-29T00:00:00Z")),
        Some(at("2026-11-30T06:30:00Z"))
    );
    assert_eq!(s, "0 */12 * * *".parse::<Schedule>().unwrap());
}

#[test]
fn bad_schedules_are_refused() {
    for bad in [
        "",
        "* * * *",
        "0 0 * * * *",
        "60 * * * *",
        "0 0 30 2 *",
        "every day",
    ] {
        let err = Schedule::parse(bad).unwrap_err();
        assert!(err.contains(&format!("`{}`", bad.trim())), "{bad}: {err}");
    }
    assert!(
        Schedule::parse("0 0 30 2 *")
            .unwrap_err()
            .ends_with("never fires")
    );
}

#[test]
fn min_gap_is_the_closest_two_ticks_come() {
    for (text, secs) in [
        ("* * * * *", 60),
        ("*/30 * * * *", 1800),
        ("0 */12 * * *", 43_200),
        ("0 9,17 * * *", 8 * 3600),
        ("0 0 * * *", 86_400),
        ("0 0 * * MON", 7 * 86_400),
        ("0,5 0 1 * *", 300),
        ("0 0 1 1 *", 365 * 86_400),
        ("45 23 * * 0 ", 7 * 86_400),
        ("59 23 31 12 *", 365 * 86_400),
        ("0 0 29 2 *", (366 + 365 + 7) * 86_400),
    ] {
        assert_eq!(
            Schedule::parse(text).unwrap().min_gap().as_secs(),
            secs,
            "{text}"
        );
    }
    // Dense schedules are quick to measure.
    let started = std::time::Instant::now();
    for text in ["*/2 * * * *", "*/5 * * * *", "*/29 * * * *"] {
        Schedule::parse(text).unwrap().min_gap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
