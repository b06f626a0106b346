//! The PostgreSQL store on a server that accepts only TLS (as managed PostgreSQL does):
//! certificates made here, `pg_hba.conf` with `hostssl` lines and `hostnossl ... reject`, and
//! each `sslmode` tried against it. One server for the file; each test has its own database.

use std::{sync::OnceLock, time::Duration};

use host_tests::{
    certs::TestPki,
    pg::{self, fail},
    pg_server::{PgServer, TlsFiles},
};
use postgres::Client;
use resilient_circuit_std::{
    BreakerConfig, BreakerKey, Ratio,
    postgres::{DbSettings, PostgresStore, SslMode},
};

/// The role that logs in with a client certificate (`cert` authentication).
const CERT_ROLE: &str = "rc_cert_user";

const HBA: &str = "local all all trust
hostssl all rc_cert_user 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust
hostnossl all all 0.0.0.0/0 reject
";

struct TlsServer {
    server: PgServer,
    pki: TestPki,
}

/// The file's server, started with TLS on first use.
fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        pg::port(); // only under `cargo xtask test`, as every PostgreSQL test
        let pki = TestPki::new("tls", CERT_ROLE);
        let mut server = PgServer::start().expect("a server of its own");
        let files = TlsFiles {
            server_cert: &pki.server_cert_pem,
            server_key: &pki.server_key_pem,
            client_ca: &pki.ca_pem,
        };
        server.enable_tls(&files, HBA).expect("TLS on");
        let mut admin = admin(&server, "postgres");
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {CERT_ROLE}; CREATE ROLE {CERT_ROLE} LOGIN SUPERUSER"
            ))
            .expect("the certificate's role");
        TlsServer { server, pki }
    })
}

/// A plaintext client over the Unix socket (trusted locally).
fn admin(server: &PgServer, dbname: &str) -> Client {
    pg::connect_over_socket(server, dbname)
}

/// A database of its own, with the table.
fn database(name: &str) -> String {
    pg::fresh_database_over_socket(&server().server, name).0
}

fn dsn(db: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} {extra}",
        server().server.port()
    )
}

fn connect(dsn: &str) -> Result<PostgresStore, String> {
    let settings = DbSettings::from_dsn(dsn).map_err(|e| e.to_string())?;
    PostgresStore::builder(settings)
        .round_trip_timeout(Duration::from_secs(2))
        .connect()
        .map_err(|e| e.to_string())
}

/// Whether every connection of `application_name` to `db` is encrypted, and how many there are.
fn encrypted(db: &str) -> (bool, i64) {
    let mut admin = admin(&server().server, "postgres");
    let row = admin
        .query_one(
            "SELECT coalesce(bool_and(s.ssl), false), count(*) FROM pg_stat_activity a
               JOIN pg_stat_ssl s ON s.pid = a.pid
              WHERE a.datname = $1 AND a.application_name = 'resilient-circuit'",
            &[&db],
        )
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn plaintext_is_refused_by_a_tls_only_server() {
    let db = database("tls_plain");
    let error = connect(&dsn(&db, "sslmode=disable")).unwrap_err();
    assert!(error.contains("no encryption"), "{error}");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn prefer_the_default_and_require_end_up_encrypted_and_work() {
    let db = database("tls_prefer");
    for extra in ["", "sslmode=prefer", "sslmode=require"] {
        let store = connect(&dsn(&db, extra)).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        let config = BreakerConfig::new().failure_limit(Ratio::new(5, 5).unwrap());
        let breaker = store
            .breaker(BreakerKey::resource("tls-api").unwrap(), config)
            .unwrap();
        fail(&breaker);
        store.flush(Duration::from_secs(5)).unwrap();
        let (all, count) = encrypted(&db);
        assert!(
            all && count >= 1,
            "{extra:?}: {count} connections, encrypted: {all}"
        );
    }
    // A host given only as an address is the name the handshake uses.
    let by_address = format!(
        "hostaddr=127.0.0.1 port={} user=postgres dbname={db} sslmode=require",
        server().server.port()
    );
    connect(&by_address).expect("TLS to a hostaddr");
    let mut client = admin(&server().server, &db);
    let (_, failures) = pg::log_and_failure_count(&mut client, "tls-api");
    assert_eq!(failures, 3, "one failure through each store");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn verify_full_checks_the_chain_and_the_name() {
    let db = database("tls_verify");
    let pki = &server().pki;
    let ca = pki.path("ca.pem");
    connect(&dsn(&db, &format!("sslmode=verify-full sslrootcert={ca}"))).expect("the test CA");
    let settings =
        DbSettings::from_dsn(&dsn(&db, &format!("sslmode=verify-full sslrootcert={ca}")));
    assert_eq!(settings.unwrap().ssl_mode(), SslMode::VerifyFull);

    let other = pki.path("other-ca.pem");
    let error = connect(&dsn(
        &db,
        &format!("sslmode=verify-full sslrootcert={other}"),
    ))
    .unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");

    // Reached by another name than the certificate's: refused by verify-full, accepted by
    // verify-ca, which checks only the chain.
    let renamed = |mode: &str| {
        format!(
            "host=db.example hostaddr=127.0.0.1 port={} user=postgres dbname={db} sslmode={mode} sslrootcert={ca}",
            server().server.port()
        )
    };
    let error = connect(&renamed("verify-full")).unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
    connect(&renamed("verify-ca")).expect("verify-ca checks the chain only");
}

#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_client_certificate_logs_in_with_cert_authentication() {
    let db = database("tls_cert");
    let pki = &server().pki;
    let as_cert_role = |extra: &str| {
        format!(
            "host=127.0.0.1 port={} user={CERT_ROLE} dbname={db} sslmode=verify-full sslrootcert={} {extra}",
            server().server.port(),
            pki.path("ca.pem"),
        )
    };
    let error = connect(&as_cert_role("")).unwrap_err();
    assert!(error.contains("certificate"), "{error}");
    connect(&as_cert_role(&format!(
        "sslcert={} sslkey={}",
        pki.path("client.pem"),
        pki.path("client.key")
    )))
    .expect("cert authentication");
}

#[test]
fn a_certificate_file_that_cannot_be_read_is_an_error_naming_it() {
    let error = DbSettings::from_dsn("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem")
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    let half = DbSettings::from_dsn("host=db sslcert=/c.pem")
        .unwrap_err()
        .to_string();
    assert!(half.contains("both sslcert and sslkey"), "{half}");
    let mode = DbSettings::from_dsn("host=db sslmode=verify")
        .unwrap_err()
        .to_string();
    assert!(mode.contains("\"verify\""), "{mode}");
}

/// `AnyStore::from_env` with a certificate it must refuse: under `RC_DB_STRICT` an error that
/// says why, never the unshared in-process store; without it, the fallback's warning says why.
#[test]
#[ignore = "needs PostgreSQL: cargo xtask test"]
fn a_refused_certificate_is_an_error_under_strict_and_a_warned_fallback_otherwise() {
    let db = database("tls_select");
    let other = server().pki.path("other-ca.pem");
    let run = |strict: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pg_peer"));
        command
            .arg("select")
            .current_dir(std::env::temp_dir())
            .env(
                "RC_DB_DSN",
                dsn(&db, &format!("sslmode=verify-full sslrootcert={other}")),
            )
            .env_remove("RC_DB_HOST")
            .env_remove("RC_DB_PASSWORD")
            .env_remove("RC_DB_SSLMODE");
        if strict {
            command.env("RC_DB_STRICT", "1");
        } else {
            command.env_remove("RC_DB_STRICT");
        }
        let output = command.output().expect("run pg_peer");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, stdout, _) = run(true);
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.contains("UnknownIssuer"), "{stdout}");
    let (status, stdout, stderr) = run(false);
    assert_eq!((status, stdout.trim()), (Some(0), "memory default"));
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

/// libpq's rules for the roots: `sslrootcert=system` means `verify-full` and refuses anything
/// weaker, and `verify-ca` needs a CA of its own (the platform's would pass any public
/// certificate).
#[test]
fn the_platform_roots_are_used_only_where_the_name_is_checked_too() {
    // (Where the platform has no roots at all, that is the error.)
    if let Ok(settings) = DbSettings::from_dsn("host=db sslrootcert=system") {
        assert_eq!(settings.ssl_mode(), SslMode::VerifyFull);
    }
    for weak in ["prefer", "require", "verify-ca"] {
        let error = DbSettings::from_dsn(&format!("host=db sslrootcert=system sslmode={weak}"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "sslmode={weak} may not be used with sslrootcert=system"
            )),
            "{error}"
        );
    }
    let error = DbSettings::from_dsn("host=db sslmode=verify-ca")
        .unwrap_err()
        .to_string();
    assert!(error.contains("verify-ca needs sslrootcert"), "{error}");
}

/// A Python service of the same fleet (the `resilient-circuit` package, with psycopg's libpq)
/// on the same TLS-only server, `verify-full` against the test CA: what it trips, the Rust
/// store sees, and what the Rust store trips, it reads.
#[test]
#[ignore = "needs PostgreSQL and the Python peer: cargo xtask test"]
fn python_peer_on_the_tls_server_shares_the_state() {
    let python = host_tests::pg_server::python_peer()
        .unwrap_or_else(|| panic!("{}", host_tests::pg_server::PYTHON_PEER_MISSING));
    let db = database("tls_python");
    let verified = dsn(
        &db,
        &format!(
            "sslmode=verify-full sslrootcert={}",
            server().pki.path("ca.pem")
        ),
    );
    let python_peer = |key: &str, failures: u32| {
        let output = std::process::Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/peer.py"))
            .args([verified.as_str(), key, &failures.to_string()])
            .output()
            .expect("run the Python peer");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let store = connect(&verified).expect("the Rust store, verify-full");
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(2, 2).unwrap())
        .cooldown(Duration::from_secs(60));
    let tripped_by_python = store
        .breaker(BreakerKey::resource("py-trips").unwrap(), config)
        .unwrap();
    assert_eq!(python_peer("py-trips", 2), "OPEN");
    pg::until("Python's trip seen by the Rust store", || {
        (tripped_by_python.status() == resilient_circuit_std::CircuitState::Open).then_some(())
    });

    let tripped_by_rust = store
        .breaker(BreakerKey::resource("rust-trips").unwrap(), config)
        .unwrap();
    fail(&tripped_by_rust);
    fail(&tripped_by_rust);
    store.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(python_peer("rust-trips", 0), "OPEN");
}
