//! `cargo xtask pg-setup` and `pg-check` against a real PostgreSQL server: the throwaway one
//! `cargo xtask test` starts (its port in `RC_TEST_PG_PORT`). Each test works in a database of
//! its own.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use postgres::{Client, NoTls};

/// The test server's port. The tests that need it are `#[ignore]`d, and `cargo xtask test`
/// runs them with its server; run by hand without one, they fail here.
fn port() -> u16 {
    std::env::var("RC_TEST_PG_PORT")
        .expect("RC_TEST_PG_PORT: run the PostgreSQL tests through `cargo xtask test`")
        .parse()
        .expect("RC_TEST_PG_PORT is a port number")
}

fn admin(port: u16) -> Client {
    Client::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        NoTls,
    )
    .expect("the test server accepts the superuser")
}

/// A fresh, empty database for one test.
fn fresh_database(port: u16, test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "cli_{test}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    admin(port)
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("CREATE DATABASE");
    name
}

fn connect(port: u16, dbname: &str) -> Client {
    Client::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname={dbname}"),
        NoTls,
    )
    .expect("connect to the test database")
}

/// Runs `cargo xtask <args>` (the built binary) with only the given `RC_DB_*` variables, in
/// `dir`, feeding `stdin`.
fn xtask(args: &[&str], vars: &[(&str, String)], dir: &Path, stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("RC_DB_") || name == "RC_NAMESPACE" {
            command.env_remove(name);
        }
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run xtask");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("xtask finishes")
}

fn vars(port: u16, dbname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RC_DB_HOST", "127.0.0.1".to_owned()),
        ("RC_DB_PORT", port.to_string()),
        ("RC_DB_NAME", dbname.to_owned()),
        ("RC_DB_USER", "postgres".to_owned()),
    ]
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn status(output: &Output) -> i32 {
    output.status.code().expect("xtask exits with a status")
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn setup_then_check_exit_codes_and_idempotence() {
    let port = port();
    let db = fresh_database(port, "codes");
    let here = std::env::temp_dir();
    let env = vars(port, &db);

    let check = xtask(&["pg-check"], &env, &here, "");
    assert_eq!(
        status(&check),
        1,
        "no table yet: unusable\n{}",
        text(&check)
    );
    assert!(text(&check).contains("does not exist"), "{}", text(&check));

    let setup = xtask(&["pg-setup", "--yes"], &env, &here, "");
    assert_eq!(status(&setup), 0, "{}", text(&setup));
    assert!(
        text(&setup).contains("created table public.rc_circuit_breakers"),
        "{}",
        text(&setup)
    );
    assert!(
        text(&setup).contains("created index idx_rc_circuit_breakers_state_updated"),
        "{}",
        text(&setup)
    );
    assert!(
        text(&setup).contains("created trigger update_rc_circuit_breakers_updated_at"),
        "{}",
        text(&setup)
    );

    let check = xtask(&["pg-check"], &env, &here, "");
    assert_eq!(status(&check), 0, "{}", text(&check));

    let again = xtask(&["pg-setup", "--yes"], &env, &here, "");
    assert_eq!(status(&again), 0, "{}", text(&again));
    assert!(
        text(&again).contains("Schema already correct; nothing changed."),
        "{}",
        text(&again)
    );

    connect(port, &db)
        .batch_execute("DROP INDEX idx_rc_circuit_breakers_state")
        .unwrap();
    let check = xtask(&["pg-check"], &env, &here, "");
    assert_eq!(
        status(&check),
        3,
        "usable, an index missing\n{}",
        text(&check)
    );
    assert!(
        text(&check).contains("index idx_rc_circuit_breakers_state is missing"),
        "{}",
        text(&check)
    );

    connect(port, &db)
        .batch_execute("DROP TRIGGER update_rc_circuit_breakers_updated_at ON rc_circuit_breakers")
        .unwrap();
    let repair = xtask(&["pg-setup", "--yes"], &env, &here, "");
    assert!(
        text(&repair).contains("created index idx_rc_circuit_breakers_state"),
        "{}",
        text(&repair)
    );
    assert!(
        text(&repair).contains("created trigger"),
        "{}",
        text(&repair)
    );
    assert_eq!(status(&xtask(&["pg-check"], &env, &here, "")), 0);

    // This crate's triggers and writers table are what its store needs: without them the
    // table is unusable for it, and pg-setup puts them back.
    connect(port, &db)
        .batch_execute(
            "DROP TRIGGER rc_circuit_breakers_rc_notify ON rc_circuit_breakers;
             DROP TABLE rc_circuit_breaker_writers",
        )
        .unwrap();
    let check = xtask(&["pg-check"], &env, &here, "");
    assert_eq!(status(&check), 1, "{}", text(&check));
    for missing in [
        "trigger rc_circuit_breakers_rc_notify is missing",
        "table public.rc_circuit_breaker_writers does not exist",
    ] {
        assert!(text(&check).contains(missing), "{}", text(&check));
    }
    let repair = xtask(&["pg-setup", "--yes"], &env, &here, "");
    for created in [
        "created trigger rc_circuit_breakers_rc_notify",
        "created table public.rc_circuit_breaker_writers",
    ] {
        assert!(text(&repair).contains(created), "{}", text(&repair));
    }
    assert_eq!(status(&xtask(&["pg-check"], &env, &here, "")), 0);
}

/// A column: name, type, length, nullable, default.
type Column = (String, String, Option<i32>, String, Option<String>);

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn the_table_matches_the_python_package() {
    let port = port();
    let db = fresh_database(port, "layout");
    let here = std::env::temp_dir();
    assert_eq!(
        status(&xtask(&["pg-setup", "--yes"], &vars(port, &db), &here, "")),
        0
    );
    let mut client = connect(port, &db);
    let columns: Vec<Column> = client
        .query(
            "SELECT column_name::text, data_type::text, character_maximum_length, is_nullable::text, column_default::text
             FROM information_schema.columns WHERE table_name = 'rc_circuit_breakers' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let expected: Vec<Column> = vec![
        (
            "resource_key".into(),
            "character varying".into(),
            Some(255),
            "NO".into(),
            None,
        ),
        (
            "state".into(),
            "character varying".into(),
            Some(50),
            "NO".into(),
            None,
        ),
        (
            "failure_count".into(),
            "integer".into(),
            None,
            "NO".into(),
            Some("0".into()),
        ),
        (
            "open_until".into(),
            "timestamp with time zone".into(),
            None,
            "YES".into(),
            None,
        ),
        (
            "execution_log".into(),
            "jsonb".into(),
            None,
            "YES".into(),
            None,
        ),
        (
            "created_at".into(),
            "timestamp with time zone".into(),
            None,
            "YES".into(),
            Some("now()".into()),
        ),
        (
            "updated_at".into(),
            "timestamp with time zone".into(),
            None,
            "YES".into(),
            Some("now()".into()),
        ),
        (
            "namespace".into(),
            "character varying".into(),
            Some(255),
            "NO".into(),
            Some("'default'::character varying".into()),
        ),
        // The Rust store's own columns: defaulted or nullable, so Python writers ignore them.
        (
            "rc_epoch".into(),
            "bigint".into(),
            None,
            "NO".into(),
            Some("0".into()),
        ),
        (
            "rc_probes".into(),
            "integer".into(),
            None,
            "NO".into(),
            Some("0".into()),
        ),
        (
            "rc_probes_until".into(),
            "timestamp with time zone".into(),
            None,
            "YES".into(),
            None,
        ),
    ];
    assert_eq!(columns, expected);
    let indexes: Vec<String> = client
        .query("SELECT indexname::text FROM pg_indexes WHERE tablename = 'rc_circuit_breakers' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "idx_rc_circuit_breakers_key_namespace",
            "idx_rc_circuit_breakers_key_state",
            "idx_rc_circuit_breakers_namespace",
            "idx_rc_circuit_breakers_open_until",
            "idx_rc_circuit_breakers_state",
            "idx_rc_circuit_breakers_state_updated",
            "rc_circuit_breakers_pkey",
        ]
    );
    // The trigger keeps updated_at current on a real change only.
    client
        .batch_execute(
            "INSERT INTO rc_circuit_breakers (resource_key, state, updated_at) VALUES ('k', 'CLOSED', '2000-01-01+00');
             UPDATE rc_circuit_breakers SET state = 'OPEN' WHERE resource_key = 'k';",
        )
        .unwrap();
    let fresh: bool = client
        .query_one(
            "SELECT updated_at > now() - interval '1 minute' FROM rc_circuit_breakers",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(fresh, "the trigger set updated_at");
}

#[test]
fn dry_run_prints_the_sql_and_connects_to_nothing() {
    // Port 1 on localhost: nothing listens; a connection attempt would fail loudly.
    let env = vec![
        ("RC_DB_HOST", "127.0.0.1".to_owned()),
        ("RC_DB_PORT", "1".to_owned()),
    ];
    let output = xtask(
        &["pg-setup", "--dry-run", "--grant-to", "app_rw"],
        &env,
        &std::env::temp_dir(),
        "",
    );
    assert_eq!(status(&output), 0, "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("CREATE TABLE public.rc_circuit_breakers"),
        "{out}"
    );
    assert!(
        out.contains("CREATE TRIGGER update_rc_circuit_breakers_updated_at"),
        "{out}"
    );
    assert!(
        out.contains(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.rc_circuit_breakers TO \"app_rw\""
        ),
        "{out}"
    );
    assert!(out.contains("nothing was connected to"), "{out}");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn without_yes_it_asks_and_the_end_of_input_cancels() {
    let port = port();
    let db = fresh_database(port, "prompt");
    let here = std::env::temp_dir();
    let env = vars(port, &db);
    let eof = xtask(&["pg-setup"], &env, &here, "");
    assert_eq!(status(&eof), 1, "{}", text(&eof));
    assert!(
        text(&eof).contains("Continue? [y/N]") && text(&eof).contains("Setup cancelled."),
        "{}",
        text(&eof)
    );
    let no = xtask(&["pg-setup"], &env, &here, "n\n");
    assert_eq!(status(&no), 1);
    assert_eq!(
        status(&xtask(&["pg-check"], &env, &here, "")),
        1,
        "nothing was created"
    );
    let yes = xtask(&["pg-setup"], &env, &here, "y\n");
    assert_eq!(status(&yes), 0, "{}", text(&yes));
    assert_eq!(status(&xtask(&["pg-check"], &env, &here, "")), 0);
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_missing_database_says_how_to_create_it() {
    let port = port();
    let output = xtask(
        &["pg-setup", "--yes"],
        &vars(port, "no_such_db"),
        &std::env::temp_dir(),
        "",
    );
    assert_eq!(status(&output), 1);
    let out = text(&output);
    assert!(
        out.contains("the database no_such_db does not exist"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "createdb -h 127.0.0.1 -p {port} -U postgres no_such_db"
        )),
        "{out}"
    );
}

#[test]
fn check_cannot_connect_is_two_and_never_shows_the_password() {
    let env = vec![
        ("RC_DB_HOST", "127.0.0.1".to_owned()),
        ("RC_DB_PORT", "1".to_owned()),
        ("RC_DB_PASSWORD", "s3cret-Pa55".to_owned()),
    ];
    let output = xtask(&["pg-check"], &env, &std::env::temp_dir(), "");
    assert_eq!(status(&output), 2, "{}", text(&output));
    assert!(!text(&output).contains("s3cret-Pa55"));
    let dsn = vec![(
        "RC_DB_DSN",
        "postgresql://app:s3cret-Pa55@127.0.0.1:1/db".to_owned(),
    )];
    let output = xtask(&["pg-check"], &dsn, &std::env::temp_dir(), "");
    assert_eq!(status(&output), 2, "{}", text(&output));
    assert!(
        !text(&output).contains("s3cret-Pa55") && !text(&output).contains("app:"),
        "{}",
        text(&output)
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn grants_to_an_application_role_and_checks_it() {
    let port = port();
    let db = fresh_database(port, "grant");
    let here = std::env::temp_dir();
    let env = vars(port, &db);
    let role = format!("app_rw_{}", std::process::id());
    let other = format!("other_{}", std::process::id());
    let mut admin = admin(port);
    for r in [&role, &other] {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN"))
            .unwrap();
    }
    let setup = xtask(&["pg-setup", "--yes", "--grant-to", &role], &env, &here, "");
    assert_eq!(status(&setup), 0, "{}", text(&setup));
    assert!(text(&setup).contains("(verified)"), "{}", text(&setup));
    assert_eq!(
        status(&xtask(&["pg-check", "--role", &role], &env, &here, "")),
        0
    );
    let lacking = xtask(&["pg-check", "--role", &other], &env, &here, "");
    assert_eq!(status(&lacking), 1, "{}", text(&lacking));
    assert!(
        text(&lacking).contains(
            "lacks SELECT on public.rc_circuit_breakers, INSERT on public.rc_circuit_breakers"
        ) && text(&lacking).contains("UPDATE on public.rc_circuit_breaker_writers"),
        "{}",
        text(&lacking)
    );
    let owner = xtask(
        &["pg-setup", "--yes", "--grant-to", "postgres"],
        &env,
        &here,
        "",
    );
    assert_eq!(status(&owner), 1, "the owner is refused\n{}", text(&owner));
    assert!(
        text(&owner).contains("owns public.rc_circuit_breakers"),
        "{}",
        text(&owner)
    );
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_dotenv_file_fills_in_what_the_environment_lacks() {
    let port = port();
    let db = fresh_database(port, "dotenv");
    let dir = std::env::temp_dir().join(format!("rc-dotenv-{}", std::process::id()));
    let nested = dir.join("service").join("bin");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("RC_DB_HOST=127.0.0.1\nRC_DB_PORT={port}\nRC_DB_NAME={db}\nRC_DB_USER=postgres\n"),
    )
    .unwrap();
    // From a subdirectory: the file is found in a parent.
    let setup = xtask(&["pg-setup", "--yes"], &[], &nested, "");
    assert_eq!(status(&setup), 0, "{}", text(&setup));
    assert!(text(&setup).contains("(with .env)"), "{}", text(&setup));
    // A variable that is set wins over the file.
    let overridden = xtask(
        &["pg-check"],
        &[("RC_DB_NAME", "no_such_db".to_owned())],
        &nested,
        "",
    );
    assert_eq!(status(&overridden), 2, "{}", text(&overridden));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every task says how to use it, and does nothing else.
#[test]
fn every_task_answers_help_and_does_nothing_else() {
    let here = std::env::temp_dir();
    for task in ["test", "firmware", "bench", "chaos", "pg-setup", "pg-check"] {
        for flag in ["--help", "-h"] {
            let output = xtask(&[task, flag], &[], &here, "");
            assert_eq!(status(&output), 0, "{task} {flag}: {}", text(&output));
            assert!(
                text(&output).starts_with(&format!("usage: cargo xtask {task}")),
                "{task} {flag}: {}",
                text(&output)
            );
        }
    }
    let unknown = xtask(&["nope", "--help"], &[], &here, "");
    assert_eq!(status(&unknown), 1);
}

/// A dry run without a role to grant to says so plainly, not as a problem.
#[test]
fn a_dry_run_without_a_role_says_none_was_asked_for() {
    let output = xtask(&["pg-setup", "--dry-run"], &[], &std::env::temp_dir(), "");
    assert_eq!(status(&output), 0, "{}", text(&output));
    assert!(
        text(&output).contains("grant: none asked for"),
        "{}",
        text(&output)
    );
}
