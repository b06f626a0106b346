//! `cargo xtask pg-setup` and `cargo xtask pg-check`: the operator's side of the shared table.
//!
//! Exit statuses follow the Python package's `resilient-circuit-cli`: `pg-setup` 0 done, 1
//! cancelled or failed; `pg-check` 0 complete, 1 unusable or privileges missing, 2 cannot
//! connect, 3 usable but an index or the updated_at trigger is missing.

use std::io::{self, BufRead, Write};

use resilient_circuit_std::postgres::{self as pg, DbSettings, schema};

/// `pg-setup [--yes] [--dry-run] [--grant-to ROLE]`.
pub fn pg_setup(args: &[String]) -> u8 {
    let (mut yes, mut dry_run, mut grant_to) = (false, false, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--yes" | "-y" => yes = true,
            "--dry-run" => dry_run = true,
            "--grant-to" => match rest.next() {
                Some(role) => grant_to = Some(role.clone()),
                None => return usage_error("--grant-to needs a role"),
            },
            other => return usage_error(&format!("unknown argument to pg-setup: {other}")),
        }
    }
    let dotenv = pg::load_dotenv();
    let settings = match DbSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("pg-setup: {e}");
            return 1;
        }
    };
    let grant_to = grant_to.or_else(|| settings.app_user().map(str::to_owned));
    println!(
        "resilient-circuit: set up the shared circuit-breaker table {}",
        schema::TABLE
    );
    println!(
        "database: {}{}",
        settings.describe(),
        if dotenv { " (with .env)" } else { "" }
    );
    match &grant_to {
        Some(role) => println!("grant SELECT, INSERT, UPDATE, DELETE to: {role}"),
        None => println!("grant: none asked for (--grant-to ROLE, or RC_DB_APP_USER, names one)"),
    }
    if dry_run {
        println!("\n-- dry run: the SQL, in one transaction; nothing was connected to\nBEGIN;");
        for statement in schema::setup_sql(grant_to.as_deref()) {
            println!("{statement};");
        }
        println!("COMMIT;");
        return 0;
    }
    if !yes && !confirm() {
        println!("Setup cancelled.");
        return 1;
    }
    let mut client = match settings.connect() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("pg-setup: {}", connect_failure(&settings, &e));
            return 1;
        }
    };
    match schema::setup(&mut client, grant_to.as_deref()) {
        Ok(outcome) => {
            if outcome.changes.is_empty() {
                println!("Schema already correct; nothing changed.");
            } else {
                println!("Schema changed:");
                for change in &outcome.changes {
                    println!("  - {change}");
                }
            }
            if let Some(role) = outcome.granted_to {
                println!(
                    "Granted SELECT, INSERT, UPDATE, DELETE on {} to {role} (verified).",
                    schema::TABLE
                );
            }
            0
        }
        Err(e) => {
            eprintln!("pg-setup: {}", e);
            1
        }
    }
}

/// `pg-check [--role ROLE]`.
pub fn pg_check(args: &[String]) -> u8 {
    let mut role = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--role" => match rest.next() {
                Some(r) => role = Some(r.clone()),
                None => return usage_error("--role needs a role"),
            },
            other => return usage_error(&format!("unknown argument to pg-check: {other}")),
        }
    }
    pg::load_dotenv();
    let settings = match DbSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("pg-check: {e}");
            return 2;
        }
    };
    let role = role.or_else(|| settings.app_user().map(str::to_owned));
    let mut client = match settings.connect() {
        Ok(client) => client,
        Err(e) => {
            eprintln!(
                "pg-check: cannot connect: {}",
                connect_failure(&settings, &e)
            );
            return 2;
        }
    };
    let report = match schema::inspect(&mut client) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("pg-check: cannot read the schema: {}", explain(&e));
            return 2;
        }
    };
    println!("database: {}", settings.describe());
    if !report.usable() {
        println!("unusable: {}", report.problems().join("; "));
        println!("run `cargo xtask pg-setup` to create or repair it");
        return 1;
    }
    if let Some(role) = &role {
        match schema::privileges(&mut client, Some(role)) {
            Ok(privileges) if privileges.missing.is_empty() => {
                println!(
                    "role {role}: SELECT, INSERT, UPDATE, DELETE on {}; SELECT, INSERT, UPDATE on {} granted",
                    schema::TABLE,
                    schema::WRITERS_TABLE
                );
            }
            Ok(privileges) => {
                println!("role {role} lacks {}", privileges.missing.join(", "));
                println!(
                    "grant them with `cargo xtask pg-setup --grant-to {role}` (as the table's owner)"
                );
                return 1;
            }
            Err(e) => {
                eprintln!("pg-check: cannot check role {role}: {}", explain(&e));
                return 2;
            }
        }
    }
    if !report.complete() {
        println!("usable, but: {}", report.problems().join("; "));
        return 3;
    }
    println!(
        "schema complete: table, primary key, 6 indexes, the updated_at trigger, and this crate's writers table and triggers"
    );
    0
}

fn usage_error(message: &str) -> u8 {
    eprintln!("xtask: {message}");
    eprintln!(
        "usage: cargo xtask pg-setup [--yes] [--dry-run] [--grant-to ROLE]\n       cargo xtask pg-check [--role ROLE]"
    );
    1
}

/// Asks `Continue? [y/N]`; anything but y/yes, and the end of input, cancel.
fn confirm() -> bool {
    print!("Continue? [y/N] ");
    let _ = io::stdout().flush();
    let mut answer = String::new();
    match io::stdin().lock().read_line(&mut answer) {
        Ok(0) | Err(_) => {
            println!();
            false
        }
        Ok(_) => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}

/// A connection failure, with the `createdb` command when the database is missing.
fn connect_failure(settings: &DbSettings, error: &pg::ConnectError) -> String {
    let missing = match error {
        pg::ConnectError::Postgres(e) => {
            e.code() == Some(&postgres::error::SqlState::INVALID_CATALOG_NAME)
        }
        _ => false,
    };
    if missing {
        let config = settings.config();
        let dbname = config.get_dbname().unwrap_or("resilient_circuit_db");
        let user = config
            .get_user()
            .map(|u| format!(" -U {u}"))
            .unwrap_or_default();
        let host = match config.get_hosts().first() {
            Some(pg::Host::Tcp(host)) => format!(" -h {host}"),
            _ => String::new(),
        };
        let port = config
            .get_ports()
            .first()
            .map(|p| format!(" -p {p}"))
            .unwrap_or_default();
        return format!(
            "the database {dbname} does not exist; create it with: createdb{host}{port}{user} {dbname}"
        );
    }
    error.to_string()
}

/// The driver's error with its cause: the server's message (its own text says only "db error").
fn explain(error: &postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}
