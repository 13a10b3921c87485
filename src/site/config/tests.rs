use super::*;

const BASE: &str = "[repository]\npath = \"repo\"\npassword_file = \"pw\"\n";

fn ok(extra: &str) -> Config {
    parse(&format!("{BASE}{extra}"), Path::new("/etc/site")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(extra: &str) -> String {
    parse(&format!("{BASE}{extra}"), Path::new("/etc/site")).unwrap_err()
}

/// With top-level keys, which must come before the first table.
fn err_top(top: &str, extra: &str) -> String {
    parse(&format!("{top}{BASE}{extra}"), Path::new("/etc/site")).unwrap_err()
}

#[test]
fn the_template_is_a_valid_config() {
    let c = parse(TEMPLATE, Path::new("/etc/cairn")).unwrap();
    assert_eq!(c.components.len(), 4);
    assert_eq!(c.recovery_order, ["db", "cache", "n8n", "app-config"]);
    assert_eq!(c.schedules.len(), 6);
    assert!(c.profiles.iter().any(|(p, _)| p == "config-only"));
    assert_eq!(c.alerts.webhooks.len(), 1);
    assert_eq!(c.server.tokens.len(), 2);
    assert_eq!(c.server.tokens[0].role, Role::Operator);
    assert_eq!(c.server.tokens[1].role, Role::Read);
    assert_eq!(c.server.listen.unwrap().port(), 8010);
}

#[test]
fn server_tokens_and_addresses_are_checked() {
    let c = ok(
        "[server]\n[[server.tokens]]\nname = \"ci\"\ntoken_file = \"ci.token\"\nrole = \"operator\"\n",
    );
    assert_eq!(
        c.server.tokens[0].source,
        TokenSource::File("/etc/site/ci.token".into())
    );
    assert!(c.server.listen.is_none() && c.server.tls.is_none());
    for (body, want) in [
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        (
            "[server]\n[[server.tokens]]\nname = \"a\"\ntoken = \"short\"\n",
            "shorter than 16",
        ),
        (
            "[server]\n[[server.tokens]]\nname = \"a\"\n",
            "give token or token_file",
        ),
        (
            "[server]\n[[server.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\ntoken_file = \"f\"\n",
            "one of them",
        ),
        (
            "[server]\n[[server.tokens]]\nname = \"a\"\ntoken_file = \"f\"\n[[server.tokens]]\nname = \"a\"\ntoken_file = \"g\"\n",
            "a second token",
        ),
        (
            "[server]\n[[server.tokens]]\nname = \"a\"\ntoken_file = \"f\"\nrole = \"admin\"\n",
            "unknown variant",
        ),
        ("[server]\ntls_cert = \"c.pem\"\n", "together"),
        ("[server]\nport = 1\n", "unknown field"),
    ] {
        let e = err(body);
        assert!(e.contains(want), "{body}: {e}");
    }
}

#[test]
fn resolves_paths_beside_the_file_and_keeps_file_order() {
    let c = ok(r#"
        [components.zeta]
        paths = ["data", "/abs"]
        [components.alpha]
        command = "pg_dump db"
        [components.mid]
        sqlite = "app.db"
    "#);
    assert_eq!(c.repository.path, Path::new("/etc/site/repo"));
    assert_eq!(
        c.repository.password,
        PasswordSource::File("/etc/site/pw".into())
    );
    let names: Vec<&str> = c.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
    assert_eq!(c.recovery_order, ["zeta", "alpha", "mid"]);
    match &c.components[0].source {
        Source::Paths { paths, .. } => {
            assert_eq!(paths, &[PathBuf::from("/etc/site/data"), "/abs".into()])
        }
        s => panic!("{s:?}"),
    }
    match &c.components[1].source {
        Source::Command { filename, .. } => assert_eq!(filename, "alpha"),
        s => panic!("{s:?}"),
    }
    assert_eq!(c.components[0].max_age, Duration::from_secs(25 * 3600));
    // The seeds' kinds by default.
    assert_eq!(
        c.kind("pre-deploy").unwrap().keep_within,
        Some("7d".parse().unwrap())
    );
    assert_eq!(
        c.kind("emergency").unwrap().keep_within,
        Some("180d".parse().unwrap())
    );
    assert!(
        c.kind("nightly")
            .unwrap_err()
            .to_string()
            .contains("add a [kinds.nightly] table")
    );
}

#[test]
fn kinds_replace_defaults_and_use_the_forget_rules() {
    let c = ok(
        "[kinds.scheduled]\nkeep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 12\n[kinds.nightly]\nkeep_last = 3\n",
    );
    let s = c.kind("scheduled").unwrap();
    assert_eq!(
        (s.keep_daily, s.keep_weekly, s.keep_monthly, s.keep_within),
        (Some(7), Some(4), Some(12), None)
    );
    assert_eq!(c.kind("nightly").unwrap().keep_last, Some(3));
    let typo = err("\n[kinds.scheduled]\nkeep_dayly = 7\n");
    assert!(typo.starts_with("line 5: kinds.scheduled: "), "{typo}");
    assert!(typo.contains("keep_dayly"), "{typo}");
    let empty = err("[kinds.x]\n");
    assert!(
        empty.contains("no keep_* rule") || empty.contains("keep everything"),
        "{empty}"
    );
}

#[test]
fn typos_name_the_line_the_key_and_what_is_expected() {
    let e = err("\n[components.db]\ncomand = \"pg_dump\"\n");
    assert!(e.contains("line 6"), "{e}");
    assert!(e.contains("unknown field `comand`"), "{e}");
    assert!(e.contains("`command`"), "{e}");
    let top = err_top("stat_dir = \"x\"\n", "");
    assert!(
        top.contains("unknown field `stat_dir`") && top.contains("state_dir"),
        "{top}"
    );
    let span = err("[alerts]\nmax_age = \"25 hours\"\n");
    assert!(
        span.contains("line 5") && span.contains("needs a unit"),
        "{span}"
    );
}

#[test]
fn refuses_what_the_types_cannot() {
    let both = err("[components.x]\npaths = [\"/a\"]\ncommand = \"true\"\n");
    assert!(
        both.contains("line 4: components.x: give exactly one of"),
        "{both}"
    );
    let none = err("[components.x]\nbefore = \"true\"\n");
    assert!(none.contains("give exactly one of"), "{none}");
    let misplaced = err("[components.x]\ncommand = \"true\"\nexclude = [\"a\"]\n");
    assert!(misplaced.contains("paths components only"), "{misplaced}");
    let restore = err("[components.x]\nsqlite = \"a.db\"\nrestore_command = \"cat\"\n");
    assert!(restore.contains("command components only"), "{restore}");
    let name = err("[components.\"a b\"]\ncommand = \"true\"\n");
    assert!(name.contains("component name \"a b\""), "{name}");
    let member = err("[components.db]\ncommand = \"true\"\n[profiles]\nfull = [\"db\", \"dbb\"]\n");
    assert!(
        member.contains("profiles.full: no component \"dbb\" (components: db)"),
        "{member}"
    );
    let clash = err("[components.db]\ncommand = \"true\"\n[profiles]\ndb = [\"db\"]\n");
    assert!(clash.contains("also a component"), "{clash}");
    let order = err_top(
        "recovery_order = [\"db\", \"db\"]\n",
        "[components.db]\ncommand = \"true\"\n",
    );
    assert!(order.contains("listed twice"), "{order}");
    let url = err("[alerts]\nwebhooks = [\"hooks.example.com\"]\n");
    assert!(url.contains("not an http:// or https:// URL"), "{url}");
    let pw = err("[offsite.usb]\npath = \"/x\"\npassword_file = \"a\"\npassword_command = \"b\"\n");
    assert!(
        pw.contains("offsite.usb: password_file and password_command exclude each other"),
        "{pw}"
    );
}

#[test]
fn schedules_are_checked_and_named() {
    let c = ok(r#"
        [components.db]
        command = "true"
        [profiles]
        full = ["db"]
        [[schedules]]
        cron = "15 3 * * *"
        profile = "full"
        [[schedules]]
        cron = "30 4 * * *"
        action = "check"
        [[schedules]]
        cron = "0 * * * *"
        components = ["db"]
        kind = "pre-deploy"
    "#);
    let names: Vec<&str> = c.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["run-full", "check", "run-db"]);
    assert_eq!(c.schedules[0].kind, SCHEDULED);
    assert_eq!(c.schedules[1].read_data_subset, "4%");
    assert_eq!(c.schedules[1].max_age, Duration::from_secs(30 * 86400));
    assert!(!c.schedules[1].authenticate_only);
    let quick = ok(r#"
        [components.db]
        command = "true"
        [[schedules]]
        cron = "30 4 * * *"
        action = "check"
        authenticate_only = true
    "#);
    assert!(quick.schedules[0].authenticate_only);
    let args = crate::site::schedule::command(
        std::path::Path::new("/usr/bin/cairn"),
        std::path::Path::new("/etc/cairn.toml"),
        &quick.schedules[0],
    );
    assert_eq!(args.last().map(String::as_str), Some("--authenticate-only"));
    let misplaced = err("[[schedules]]\ncron = \"@daily\"\nauthenticate_only = true\n");
    assert!(
        misplaced.contains("apply to action = \"check\" only"),
        "{misplaced}"
    );
    let cron = err("[[schedules]]\ncron = \"61 * * * *\"\n");
    assert!(
        cron.contains("line 4: schedules[1]: cron \"61 * * * *\": minute"),
        "{cron}"
    );
    let kind = err("[[schedules]]\ncron = \"0 0 * * *\"\nkind = \"nightly\"\n");
    assert!(kind.contains("no [kinds.nightly]"), "{kind}");
    let twice = err(
        "[[schedules]]\ncron = \"0 0 * * *\"\naction = \"prune\"\n[[schedules]]\ncron = \"0 1 * * *\"\naction = \"prune\"\n",
    );
    assert!(
        twice.contains("a second schedule named \"prune\""),
        "{twice}"
    );
    let scoped = err(
        "[components.db]\ncommand = \"true\"\n[[schedules]]\ncron = \"0 0 * * *\"\naction = \"check\"\ncomponents = [\"db\"]\n",
    );
    assert!(scoped.contains("covers the whole repository"), "{scoped}");
}

#[test]
fn selects_profiles_and_components_once_in_file_order() {
    let c = ok(r#"
        [components.a]
        command = "true"
        [components.b]
        command = "true"
        [components.c]
        command = "true"
        [profiles]
        data = ["c", "a"]
    "#);
    let names = |v: Vec<&Component>| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(c.select(&[]).unwrap()), ["a", "b", "c"]);
    assert_eq!(
        names(c.select(&["data".into(), "a".into()]).unwrap()),
        ["a", "c"]
    );
    let e = c.select(&["d".into()]).unwrap_err().to_string();
    assert!(
        e.contains("\"d\" is neither a profile (data) nor a component (a, b, c)"),
        "{e}"
    );
}
