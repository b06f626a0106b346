//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `test`: every test: the host tests (unit, integration, property, concurrency, doc tests),
//!   the loom model, the README's examples, the core linted for each of [`CORE_TARGETS`] with
//!   each of [`CORE_FEATURES`] (and built with the fullest), and the firmware under QEMU.
//! - `bench`: the criterion benchmarks.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The target the example firmware runs on first (under QEMU); [`BOARDS`] has them all.
const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

/// A machine the example firmware runs on under QEMU.
struct Board {
    /// Its Rust target.
    target: &'static str,
    /// The QEMU machine, for the step's label.
    machine: &'static str,
    /// The QEMU binary `run-qemu.sh` runs for it.
    qemu: &'static str,
}

/// The example firmware's machines: the same scenario, checks and figures on both.
const BOARDS: [Board; 2] = [
    Board {
        target: FIRMWARE_TARGET,
        machine: "mps2-an386, Cortex-M4F",
        qemu: "qemu-system-arm",
    },
    Board {
        target: "riscv32imac-unknown-none-elf",
        machine: "virt, RV32IMAC",
        qemu: "qemu-system-riscv32",
    },
];
/// The targets the core must build for, clippy-clean: Cortex-M4F (STM32 and the QEMU firmware),
/// Cortex-M0+ (RP2040) and RISC-V (ESP32-C3). The last two have no compare-and-swap atomics.
const CORE_TARGETS: [&str; 3] = [
    FIRMWARE_TARGET,
    "thumbv6m-none-eabi",
    "riscv32imc-unknown-none-elf",
];
/// The core's feature sets built for each of [`CORE_TARGETS`].
const CORE_FEATURES: [&str; 3] = [
    "",
    "defmt",
    "defmt,embassy,embassy-sync,embassy-sync-07,embedded-hal",
];

/// What to do without QEMU.
const QEMU_MISSING: &str = "qemu-system-arm or qemu-system-riscv32 is missing; install them with \
     `.ci/install-qemu` (Debian bookworm-backports)";
/// Lines the firmware's log must hold.
const FIRMWARE_MUST_SHOW: [&str; 5] = [
    "breaker CLOSED -> OPEN",
    "breaker OPEN -> HALF_OPEN",
    "breaker HALF_OPEN -> CLOSED",
    "rejected, retry after",
    "PASS",
];
/// Budgets: flash (vector table, .text, .rodata) and RAM (.data, .bss) of the release firmware,
/// and the wall time of the QEMU run.
const FLASH_BUDGET: u64 = 12 * 1024;
/// The size probe's target: a Cortex-M0+ (RP2040, STM32G0), where flash is tight and `memcpy`
/// and division are calls.
const PROBE_TARGET: &str = "thumbv6m-none-eabi";
/// What the library may add to the RP2040 example's `.text` (a breaker and a retry with
/// exponential backoff in a `ProtectedBus`): 2.5 KiB.
const RP2040_ADDED_TEXT_BUDGET: u64 = 2560;

/// The sections of an image that live in flash (those it has): the RP2040's second-stage
/// bootloader, the vector table (Cortex-M), riscv-rt's start-up code (RISC-V), code and
/// constants.
const FLASH_SECTIONS: [&str; 6] = [
    ".boot2",
    ".vector_table",
    ".init",
    ".init.rust",
    ".text",
    ".rodata",
];
const RAM_BUDGET: u64 = 1024;
const QEMU_WALL_BUDGET: Duration = Duration::from_secs(2);

/// The README's examples and the lines each must print: the whole CLOSED -> OPEN -> HALF_OPEN
/// -> CLOSED cycle, and (in process) rejections that say when to retry; the axum service also
/// a timeout, an honoured `Retry-After` and its metrics page (the counts that timing cannot
/// change).
const EXAMPLES: [Example; 3] = [
    Example {
        package: "resilient-circuit",
        name: "flaky_service",
        features: "",
        must_show: &[
            "breaker CLOSED -> OPEN",
            "breaker OPEN -> HALF_OPEN",
            "breaker HALF_OPEN -> CLOSED",
            "rejected, retry after",
        ],
    },
    Example {
        package: "resilient-circuit-std",
        name: "tokio_service",
        features: "tokio",
        must_show: &[
            "breaker CLOSED -> OPEN",
            "breaker OPEN -> HALF_OPEN",
            "breaker HALF_OPEN -> CLOSED",
        ],
    },
    Example {
        package: "resilient-circuit-std",
        name: "axum_service",
        features: "tokio,http,reqwest,metrics",
        must_show: &[
            "attempt timed out after 300 ms",
            "retrying in 1000 ms (the upstream's Retry-After)",
            "breaker CLOSED -> OPEN",
            "breaker OPEN, upstream not called",
            "breaker HALF_OPEN -> CLOSED",
            "resilient_circuit_calls_total{namespace=\"shop\",resource_key=\"inventory-api\",outcome=\"rejected\",reason=\"open\"}",
            "resilient_circuit_timeouts_total{namespace=\"shop\",resource_key=\"inventory-api\"} 1",
            "resilient_circuit_retries_total{namespace=\"shop\",resource_key=\"inventory-api\"}",
            "resilient_circuit_state{namespace=\"shop\",resource_key=\"inventory-api\",state=\"CLOSED\"} 1",
        ],
    },
];

struct Example {
    package: &'static str,
    name: &'static str,
    features: &'static str,
    must_show: &'static [&'static str],
}

mod flash_share;
mod pg_cli;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    // Only before `--`: what follows it is another tool's (criterion's, for `bench`).
    if let Some(task) = args.first()
        && args[1..]
            .iter()
            .take_while(|arg| *arg != "--")
            .any(|arg| arg == "--help" || arg == "-h")
    {
        match task_help(task) {
            Some(help) => {
                println!("{help}");
                return ExitCode::SUCCESS;
            }
            None => {
                eprintln!("xtask: unknown task `{task}`\n\n{}", usage());
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match args.first().map(String::as_str) {
        Some("pg-setup") => return ExitCode::from(pg_cli::pg_setup(&args[1..])),
        Some("pg-check") => return ExitCode::from(pg_cli::pg_check(&args[1..])),
        Some("test") => test(),
        Some("firmware") => firmware(&args[1..]),
        Some("size-probe") => size_probe(),
        Some("rp2040") => rp2040(),
        Some("bench") => bench(&args[1..]),
        Some("chaos") => chaos(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What `cargo xtask TASK --help` prints.
fn task_help(task: &str) -> Option<&'static str> {
    Some(match task {
        "test" => {
            "usage: cargo xtask test\n\n\
             Every test: the host tests and the PostgreSQL tests (against throwaway servers it\n\
             starts and removes: TLS, failover, PgBouncer), the loom model, the README's\n\
             examples, the core for every target and feature set, and the firmware in QEMU.\n\
             XTASK_REQUIRE_FIRMWARE=1 fails when QEMU is missing (.ci/install-qemu installs it);\n\
             XTASK_REQUIRE_PGBOUNCER=1 fails when PgBouncer is (.ci/install-pgbouncer);\n\
             XTASK_REQUIRE_PYTHON_PEER=1 when the Python peer is (.ci/install-python-peer)."
        }
        "firmware" => {
            "usage: cargo xtask firmware [--target T] [--features F]\n\n\
             Builds the example firmware (release), runs it in QEMU, checks its log and prints\n\
             its sizes against the budgets, on Cortex-M4F (thumbv7em-none-eabihf) and RV32IMAC\n\
             (riscv32imac-unknown-none-elf), or the one --target names; --features passes cargo\n\
             features (e.g. wrong-expectation, which must fail)."
        }
        "size-probe" => {
            "usage: cargo xtask size-probe\n\n\
             Builds size-probe/ for thumbv6m-none-eabi (release, LTO, opt \"z\"): the same\n\
             firmware with and without ProtectedBus (a breaker and a retry with exponential\n\
             backoff), and prints what the library adds to .text, by piece. Fails if the\n\
             protected image links memcpy or memmove and the bare one does not, or links 64-bit\n\
             division."
        }
        "rp2040" => {
            "usage: cargo xtask rp2040\n\n\
             Builds and lints rp2040-example/ for thumbv6m-none-eabi (release, LTO, opt \"z\"): a\n\
             BME280 driver (bme280-rs) on embassy-rp's async I2C through ProtectedBus, and the\n\
             same firmware on the bare bus. Prints both images' flash, what the library adds to\n\
             .text and its share by piece; fails as size-probe does, and if the library adds more\n\
             than 2 560 bytes. No RP2040 runs it here: the QEMU firmware is the behavioural check."
        }
        "bench" => {
            "usage: cargo xtask bench [-- CRITERION ARGUMENTS]\n\n\
             Runs the criterion benchmarks (the PostgreSQL one against a throwaway server);\n\
             arguments after -- go to criterion (`cargo xtask bench -- --help` for its own)."
        }
        "chaos" => {
            "usage: cargo xtask chaos [--seed N] [--faults N]\n\n\
             Runs the seeded fault run of the PostgreSQL store against a throwaway server: four\n\
             threads record failures while N faults (default 12) drawn from the seed (default\n\
             random, printed) lose replies, black-hole and cut the link, freeze and terminate the\n\
             store's server process; every failure must be in the row once. A failing seed\n\
             replays its schedule. `cargo xtask test` runs one fixed seed."
        }
        "pg-setup" => {
            "usage: cargo xtask pg-setup [--yes] [--dry-run] [--grant-to ROLE]\n\n\
             Creates or completes the shared table where RC_DB_* and .env say (one transaction,\n\
             idempotent), and grants what the store needs to ROLE (default RC_DB_APP_USER).\n\
             --yes skips the question; --dry-run prints the SQL and connects to nothing.\n\
             Exit 0 done, 1 cancelled or failed."
        }
        "pg-check" => {
            "usage: cargo xtask pg-check [--role ROLE]\n\n\
             Checks the shared table, and ROLE's privileges (default RC_DB_APP_USER). Exit 0\n\
             complete, 1 unusable or a privilege missing, 2 cannot connect, 3 usable but an index\n\
             or the updated_at trigger is missing."
        }
        "help" => usage(),
        _ => return None,
    })
}

fn usage() -> &'static str {
    "usage: cargo xtask <task>\n\n\
     tasks:\n  \
     test      run every test (host tests, loom, the README examples, the firmware)\n  \
     firmware  build the firmware, run it in QEMU, check its log, print its sizes, on\n  \
               Cortex-M4F and RV32IMAC (--target T: one of them; --features F passes\n  \
               cargo features, e.g. wrong-expectation)\n  \
     size-probe\n  \
               what the library adds to a Cortex-M0+ firmware's flash (a breaker and a\n  \
               retry in ProtectedBus), by piece; fails if the protected path links memcpy\n  \
               or memmove\n  \
     rp2040    build and lint the embassy-rp example (a BME280 through ProtectedBus), and\n  \
               weigh the library in it\n  \
     bench     run the criterion benchmarks (extra arguments go to criterion)\n  \
     chaos [--seed N] [--faults N]\n  \
               the PostgreSQL store under a seeded run of random faults\n  \
     pg-setup [--yes] [--dry-run] [--grant-to ROLE]\n  \
               create or complete the shared table (RC_DB_* and .env say where)\n  \
     pg-check [--role ROLE]\n  \
               0 complete, 1 unusable or privileges missing, 2 cannot connect,\n  \
               3 usable but an index or the updated_at trigger is missing\n\n\
     XTASK_REQUIRE_FIRMWARE=1 makes `test` fail when QEMU is missing instead of skipping the run;\n\
     XTASK_REQUIRE_PGBOUNCER=1 the same when PgBouncer is missing (the tests behind a pooler),\n\
     XTASK_REQUIRE_PYTHON_PEER=1 when the Python package is (the tests with a Python peer)."
}

fn test() -> Result<(), String> {
    println!("xtask: starting a throwaway PostgreSQL server for the tests");
    let server = test_postgres::PgServer::start()?;
    println!(
        "xtask: PostgreSQL on 127.0.0.1:{} (pid {})",
        server.port(),
        server.pid().unwrap_or_default()
    );
    // Every cargo run below hands the server to the tests; they fail, never skip, with it.
    TEST_PG_PORT
        .set(server.port())
        .expect("the server starts once");
    // Tests that need software from outside the workspace are skipped without it, and said so
    // (a failure under their XTASK_REQUIRE_* variable, as CI sets).
    let mut host_tests = vec!["test", "--workspace", "--", "--include-ignored"];
    let optional = [
        OptionalTests {
            what: "the tests behind a connection pooler",
            installed: test_postgres::pgbouncer_bin().is_some(),
            missing: test_postgres::PGBOUNCER_MISSING,
            require: "XTASK_REQUIRE_PGBOUNCER",
            names: "pgbouncer_",
        },
        OptionalTests {
            what: "the tests with a Python peer",
            installed: test_postgres::python_peer().is_some(),
            missing: test_postgres::PYTHON_PEER_MISSING,
            require: "XTASK_REQUIRE_PYTHON_PEER",
            names: "python_peer",
        },
    ];
    for tests in &optional {
        if let Some(skip) = tests.skip()? {
            host_tests.extend(["--skip", skip]);
        }
    }
    // The PostgreSQL tests are `#[ignore]`d by a plain `cargo test`; here they have a server.
    step("host tests (and PostgreSQL tests)", || cargo(&host_tests))?;
    step("std adapters without optional features", || {
        cargo(&[
            "test",
            "-p",
            "resilient-circuit-std",
            "--no-default-features",
        ])
    })?;
    step("loom model of the shared breaker", loom)?;
    for example in &EXAMPLES {
        step(&format!("example {}", example.name), || {
            run_example(example)
        })?;
    }
    ensure_target(FIRMWARE_TARGET)?;
    let host = host_target()?;
    step(
        "firmware scenario on the host (embassy-time mock driver)",
        || {
            let args = [
                "test",
                "--no-default-features",
                "--target",
                &host,
                "--quiet",
            ];
            cargo_in(&firmware_dir(), &args)
        },
    )?;
    for target in CORE_TARGETS {
        ensure_target(target)?;
        for features in CORE_FEATURES {
            // Every feature set is linted (which compiles it); the fullest is also built, the
            // code generation for the target being the same for the others.
            let build = features == CORE_FEATURES[CORE_FEATURES.len() - 1];
            let what = if build { "build and clippy" } else { "clippy" };
            let label = format!(
                "core for {target}, {what} (features: {})",
                or_none(features)
            );
            step(&label, || core_for_target(target, features, build))?;
        }
    }
    step(
        "size probe on a Cortex-M0+ (thumbv6m): the library's flash",
        size_probe,
    )?;
    step(
        "embassy-rp example (RP2040, a BME280 through ProtectedBus): build, clippy, flash",
        rp2040,
    )?;
    if qemu_available() {
        firmware(&[])?;
    } else if env::var_os("XTASK_REQUIRE_FIRMWARE").is_some_and(|v| v == "1") {
        return Err(format!(
            "{QEMU_MISSING} (XTASK_REQUIRE_FIRMWARE=1 requires the firmware run)"
        ));
    } else {
        println!("\nxtask: firmware run skipped: {QEMU_MISSING}");
    }
    println!("\nxtask: all tests passed");
    Ok(())
}

/// Tests that need software from outside the workspace (their names hold `names`).
struct OptionalTests {
    what: &'static str,
    installed: bool,
    missing: &'static str,
    /// The variable that, at `1`, makes a missing install a failure.
    require: &'static str,
    names: &'static str,
}

impl OptionalTests {
    /// What to skip (`None`: they run), or the failure when they are required.
    fn skip(&self) -> Result<Option<&'static str>, String> {
        if self.installed {
            return Ok(None);
        }
        if env::var_os(self.require).is_some_and(|v| v == "1") {
            return Err(format!(
                "{} ({}=1 requires {})",
                self.missing, self.require, self.what
            ));
        }
        println!("xtask: {} are skipped: {}", self.what, self.missing);
        Ok(Some(self.names))
    }
}

fn chaos(args: &[String]) -> Result<(), String> {
    let mut seed = None;
    let mut faults = "12".to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .filter(|value| value.parse::<u64>().is_ok())
            .ok_or_else(|| format!("{arg} takes a number\n\n{}", task_help("chaos").unwrap()))?;
        match arg.as_str() {
            "--seed" => seed = Some(value.clone()),
            "--faults" => faults = value.clone(),
            other => {
                return Err(format!(
                    "unknown argument `{other}`\n\n{}",
                    task_help("chaos").unwrap()
                ));
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish().to_string()
    });
    println!("xtask: chaos with seed {seed} and {faults} faults");
    let server = test_postgres::PgServer::start()?;
    TEST_PG_PORT
        .set(server.port())
        .expect("the server starts once");
    step(&format!("chaos, seed {seed}"), || {
        cargo_with_env(
            &workspace_root(),
            &[
                "test",
                "-p",
                "host-tests",
                "--test",
                "store_postgres_chaos",
                "--",
                "--include-ignored",
                "--nocapture",
            ],
            &[("RC_CHAOS_SEED", &seed), ("RC_CHAOS_FAULTS", &faults)],
        )
    })
}

fn bench(extra: &[String]) -> Result<(), String> {
    // The PostgreSQL benchmark runs against a throwaway server, as the tests do.
    let server = test_postgres::PgServer::start()?;
    TEST_PG_PORT
        .set(server.port())
        .expect("the server starts once");
    let mut args = vec!["bench", "-p", "host-tests", "--bench", "*"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    step("benchmarks", || cargo(&args))
}

/// The loom test, in its own target directory: `--cfg loom` rebuilds every crate.
fn loom() -> Result<(), String> {
    let target = workspace_root().join("target").join("loom");
    let status = Command::new(cargo_bin())
        .current_dir(workspace_root())
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", target)
        .args([
            "test",
            "-p",
            "resilient-circuit-std",
            "--test",
            "loom",
            "--release",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the loom test failed ({status})"))
    }
}

fn run_example(example: &Example) -> Result<(), String> {
    let mut args = vec![
        "run",
        "-q",
        "-p",
        example.package,
        "--example",
        example.name,
    ];
    if !example.features.is_empty() {
        args.extend(["--features", example.features]);
    }
    let output = Command::new(cargo_bin())
        .current_dir(workspace_root())
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if !output.status.success() {
        return Err(format!(
            "the example failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let missing: Vec<&str> = example
        .must_show
        .iter()
        .copied()
        .filter(|line| !stdout.contains(line))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the example's output lacks: {}",
            missing.join("; ")
        ))
    }
}

/// Lints the core for `target` with `features` (`-D warnings`), building it first if `build`.
fn core_for_target(target: &str, features: &str, build: bool) -> Result<(), String> {
    let commands: &[&str] = if build {
        &["build", "clippy"]
    } else {
        &["clippy"]
    };
    for &command in commands {
        let mut args = vec![command, "-p", "resilient-circuit", "--target", target];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        if command == "clippy" {
            args.extend(["--", "-D", "warnings"]);
        }
        cargo(&args)?;
    }
    Ok(())
}

/// Adds a rustup target when it is missing (seconds, once).
fn ensure_target(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == target)
    {
        return Ok(());
    }
    println!("xtask: installing the {target} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed ({status})"))
    }
}

/// Runs one step, saying how long it took (so a slow CI run shows where its time went).
fn step(label: &str, run: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("\nxtask: == {label} ==");
    let started = Instant::now();
    let result = run().map_err(|e| format!("{label}: {e}"));
    println!("xtask: {label}: {:.0} s", started.elapsed().as_secs_f64());
    result
}

fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_in(&workspace_root(), args)
}

/// The throwaway PostgreSQL server's port, once `test` started it.
static TEST_PG_PORT: OnceLock<u16> = OnceLock::new();

fn cargo_in(dir: &Path, args: &[&str]) -> Result<(), String> {
    cargo_with_env(dir, args, &[])
}

fn cargo_with_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let mut command = Command::new(cargo_bin());
    if let Some(port) = TEST_PG_PORT.get() {
        command.env("RC_TEST_PG_PORT", port.to_string());
    }
    command.envs(envs.iter().copied());
    let status = command
        .current_dir(dir)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

fn cargo_bin() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn or_none(features: &str) -> &str {
    if features.is_empty() {
        "none"
    } else {
        features
    }
}

fn firmware_dir() -> PathBuf {
    workspace_root().join("embassy-example")
}

fn qemu_available() -> bool {
    BOARDS.iter().all(|board| {
        Command::new(board.qemu)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Build the firmware (release: LTO, opt "s"), run it in QEMU, check its status and log, and
/// print its sizes against the budgets.
fn firmware(args: &[String]) -> Result<(), String> {
    let (mut features, mut only) = (None, None);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.next()) {
            ("--features", Some(value)) => features = Some(value.as_str()),
            ("--target", Some(value)) => {
                if !BOARDS.iter().any(|board| board.target == value.as_str()) {
                    let known: Vec<&str> = BOARDS.iter().map(|board| board.target).collect();
                    return Err(format!(
                        "no firmware for {value}; the targets are {}",
                        known.join(", ")
                    ));
                }
                only = Some(value.as_str());
            }
            _ => {
                return Err(format!(
                    "unknown arguments to `firmware`: {} (it takes --features F and --target T)",
                    args.join(" ")
                ));
            }
        }
    }
    ensure_component("llvm-tools")?;
    ensure_defmt_print()?;
    if !qemu_available() {
        return Err(QEMU_MISSING.to_owned());
    }
    for board in BOARDS
        .iter()
        .filter(|board| only.is_none_or(|target| target == board.target))
    {
        ensure_target(board.target)?;
        let mut build = vec!["build", "--release", "--target", board.target];
        if let Some(features) = features {
            build.extend(["--features", features]);
        }
        step(
            &format!(
                "firmware build for {} (release, LTO, opt \"z\")",
                board.target
            ),
            || cargo_in(&firmware_dir(), &build),
        )?;
        let elf = firmware_dir()
            .join("target")
            .join(board.target)
            .join("release")
            .join("embassy-example");
        step(&format!("firmware run in QEMU ({})", board.machine), || {
            run_firmware(&elf)
        })?;
        step(&format!("firmware sizes ({})", board.machine), || {
            sizes(&elf)
        })?;
    }
    Ok(())
}

/// Builds `size-probe` (the same firmware with and without `ProtectedBus`: a breaker and a retry
/// with exponential backoff) for a Cortex-M0+, prints what the library adds to `.text` and by
/// piece, and fails if the protected image links `memcpy` or `memmove` where the bare one does
/// not.
fn size_probe() -> Result<(), String> {
    let dir = workspace_root().join("size-probe");
    build_for_probe_target(&dir)?;
    weigh_protected_bus(&dir, "bare", "protected", None)
}

/// Builds and lints `rp2040-example` (a BME280 driver on embassy-rp's I2C through
/// `ProtectedBus`, and the same firmware without it), and weighs the library in it as
/// [`size_probe`] does.
fn rp2040() -> Result<(), String> {
    let dir = workspace_root().join("rp2040-example");
    build_for_probe_target(&dir)?;
    cargo_in(
        &dir,
        &[
            "clippy",
            "--release",
            "--target",
            PROBE_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    )?;
    weigh_protected_bus(
        &dir,
        "bare",
        "rp2040-example",
        Some(RP2040_ADDED_TEXT_BUDGET),
    )
}

/// Builds the crate in `dir` for [`PROBE_TARGET`] (release), installing the target and the
/// LLVM tools its weighing needs when they are missing.
fn build_for_probe_target(dir: &Path) -> Result<(), String> {
    ensure_component("llvm-tools")?;
    ensure_target(PROBE_TARGET)?;
    cargo_in(dir, &["build", "--release", "--target", PROBE_TARGET])
}

/// Compares two release images of the crate in `dir`, built for [`PROBE_TARGET`]: the same
/// firmware without (`bare`) and with (`protected`) `ProtectedBus`. Prints the flash of each,
/// what the library adds to `.text` and its share by piece; fails if the protected image links
/// `memcpy` or `memmove` where the bare one does not, or if the library adds more than
/// `budget` bytes of `.text`.
fn weigh_protected_bus(
    dir: &Path,
    bare: &str,
    protected: &str,
    budget: Option<u64>,
) -> Result<(), String> {
    let llvm_bin = llvm_bin()?;
    let image = |name: &str| {
        dir.join("target")
            .join(PROBE_TARGET)
            .join("release")
            .join(name)
    };
    let sizes = |elf: &Path| -> Result<(u64, u64), String> {
        let table = size_table(&llvm_bin, elf)?;
        let text = section_size(&table, ".text")
            .ok_or_else(|| format!("no .text in {}", elf.display()))?;
        let flash = FLASH_SECTIONS
            .iter()
            .filter_map(|name| section_size(&table, name))
            .sum();
        Ok((text, flash))
    };
    // `memmove` too: a move the compiler cannot prove disjoint is a `memmove` call, and
    // compiler_builtins' is larger than its `memcpy`. Each is weighed on its own.
    let copies_linked = |elf: &Path| -> Result<Vec<&'static str>, String> {
        let symbols = command_stdout(Command::new(llvm_bin.join("llvm-nm")).arg(elf))?;
        let links = |copy: &str| {
            let aeabi = format!("__aeabi_{copy}");
            symbols.lines().any(|line| {
                let name = line.rsplit(' ').next().unwrap_or("");
                name == copy || name.starts_with(&aeabi)
            })
        };
        Ok(["memcpy", "memmove"]
            .into_iter()
            .filter(|copy| links(copy))
            .collect())
    };
    let (bare, protected) = (image(bare), image(protected));
    let ((bare_text, bare_flash), (protected_text, protected_flash)) =
        (sizes(&bare)?, sizes(&protected)?);
    println!("flash without ProtectedBus {bare_flash} bytes, with it {protected_flash}");
    let added = protected_text.saturating_sub(bare_text);
    println!(
        ".text without ProtectedBus {bare_text} bytes, with it {protected_text}: the library adds {added} bytes{}",
        budget.map_or(String::new(), |budget| format!(" (budget {budget})"))
    );
    print_flash_share(&llvm_bin, &protected, protected_text)?;
    let (bare_copies, protected_copies) = (copies_linked(&bare)?, copies_linked(&protected)?);
    if let Some(added_copy) = protected_copies
        .iter()
        .find(|copy| !bare_copies.contains(copy))
    {
        return Err(format!(
            "the protected image links {added_copy} on {PROBE_TARGET}: a value of the protected \
             path is moved by value again (a transaction, a result); find the call with \
             llvm-objdump -d -l {}",
            protected.display()
        ));
    }
    if protected_copies.is_empty() {
        println!("memcpy, memmove: not linked by the protected path");
    } else {
        println!(
            "{}: linked by the bare image already, none added by the protected path",
            protected_copies.join(", ")
        );
    }
    if let Some(budget) = budget
        && added > budget
    {
        return Err(format!(
            "the library adds {added} bytes of .text on {PROBE_TARGET}, over the budget of {budget}"
        ));
    }
    Ok(())
}

/// `elf`'s sections and their sizes, as `llvm-size -A` lists them.
fn size_table(llvm_bin: &Path, elf: &Path) -> Result<String, String> {
    command_stdout(Command::new(llvm_bin.join("llvm-size")).arg("-A").arg(elf))
}

/// The size of section `name` in a [`size_table`]; `None` when the image has no such section.
fn section_size(table: &str, name: &str) -> Option<u64> {
    table.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(name)).then(|| fields.next()?.parse().ok())?
    })
}

/// The LLVM tools of the toolchain (`llvm-tools` component).
fn llvm_bin() -> Result<PathBuf, String> {
    let sysroot = command_stdout(Command::new("rustc").args(["--print", "sysroot"]))?;
    Ok(Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host_target()?)
        .join("bin"))
}

fn run_firmware(elf: &Path) -> Result<(), String> {
    let started = Instant::now();
    let output = Command::new(firmware_dir().join("run-qemu.sh"))
        .arg(elf)
        .output()
        .map_err(|e| format!("cannot run run-qemu.sh: {e}"))?;
    let wall = started.elapsed();
    let log = String::from_utf8_lossy(&output.stdout);
    print!("{log}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    match output.status.code() {
        Some(0) => {}
        Some(1) => {
            return Err(
                "the firmware's scenario check failed (exit status 1): see FAIL above".into(),
            );
        }
        Some(2) => return Err("the firmware panicked (exit status 2)".into()),
        Some(3) => return Err("the firmware hit a HardFault (exit status 3)".into()),
        Some(124) => return Err("the firmware did not finish in time (timeout)".into()),
        other => return Err(format!("the firmware run failed (exit status {other:?})")),
    }
    let missing: Vec<&str> = FIRMWARE_MUST_SHOW
        .iter()
        .copied()
        .filter(|l| !log.contains(l))
        .collect();
    if !missing.is_empty() {
        return Err(format!("the firmware's log lacks: {}", missing.join("; ")));
    }
    println!(
        "xtask: QEMU run took {:.2} s of wall time (budget {} s)",
        wall.as_secs_f64(),
        QEMU_WALL_BUDGET.as_secs()
    );
    if wall > QEMU_WALL_BUDGET {
        return Err(format!(
            "the QEMU run took {:.2} s, over its budget",
            wall.as_secs_f64()
        ));
    }
    Ok(())
}

/// Prints `.text`, `.rodata`, `.data`, `.bss` and the flash and RAM totals, and checks the
/// budgets.
fn sizes(elf: &Path) -> Result<(), String> {
    let llvm_bin = llvm_bin()?;
    let table = size_table(&llvm_bin, elf)?;
    let section = |name: &str| -> u64 { section_size(&table, name).unwrap_or(0) };
    let flash_sections = FLASH_SECTIONS;
    let ram_sections = [".data", ".bss"];
    let present = |name: &&str| section_size(&table, name).is_some();
    let flash_sections: Vec<&str> = flash_sections.into_iter().filter(present).collect();
    println!("section        bytes");
    for name in flash_sections.iter().chain(&ram_sections) {
        println!("{name:<14} {:>6}", section(name));
    }
    let flash: u64 = flash_sections.iter().map(|name| section(name)).sum();
    let ram: u64 = ram_sections.iter().map(|name| section(name)).sum();
    let text = section(".text");
    println!(
        "flash ({}): {flash} bytes = {:.2} KiB (budget {} KiB)",
        flash_sections.join(" + "),
        flash as f64 / 1024.0,
        FLASH_BUDGET / 1024
    );
    println!("RAM (.data + .bss): {ram} bytes (budget {RAM_BUDGET} bytes)");
    print_flash_share(&llvm_bin, elf, text)?;
    if flash > FLASH_BUDGET || ram > RAM_BUDGET {
        return Err("the firmware is over its size budget".into());
    }
    Ok(())
}

/// Prints the library's share of `.text` (`text` bytes): its functions that kept a symbol and
/// its code inlined elsewhere (by the line table); and the 64-bit division helpers in the image.
fn print_flash_share(llvm_bin: &Path, elf: &Path, text: u64) -> Result<(), String> {
    let library_src = workspace_root().join("core").join("src");
    let share = flash_share::flash_share(llvm_bin, elf, &library_src, "resilient_circuit")?;
    println!(
        "\nthe library (resilient-circuit) in .text: {} bytes ({:.0} % of .text)",
        share.total(),
        100.0 * share.total() as f64 / text.max(1) as f64
    );
    println!("  by piece (its functions and its code inlined elsewhere):");
    for (piece, bytes) in &share.pieces {
        println!("  {bytes:>6}  {piece}");
    }
    println!("  its functions with a symbol of their own:");
    for (name, bytes) in &share.functions {
        // Drop glue of nested futures has names of kilobytes: their start says enough.
        let shown: String = name.chars().take(110).collect();
        let cut = if shown.len() < name.len() { "..." } else { "" };
        println!("  {bytes:>6}  {shown}{cut}");
    }
    println!("  its code inlined into other functions, by source file:");
    for (file, bytes) in &share.inlined {
        println!("  {bytes:>6}  {file}");
    }
    println!(
        "64-bit division helpers (compiler_builtins): {} bytes",
        share.u64_division
    );
    if share.u64_division > 0 {
        return Err(format!(
            "the firmware links compiler_builtins' 64-bit division ({} bytes): a `u64` division \
             crept in (divide by a constant with core/src/divide.rs instead)",
            share.u64_division
        ));
    }
    Ok(())
}

fn command_stdout(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Adds a rustup component when it is missing (seconds, once).
fn ensure_component(component: &str) -> Result<(), String> {
    let installed =
        command_stdout(Command::new("rustup").args(["component", "list", "--installed"]))?;
    if installed.lines().any(|line| line.starts_with(component)) {
        return Ok(());
    }
    println!("xtask: installing the {component} rustup component");
    let status = Command::new("rustup")
        .args(["component", "add", component])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup component add {component}` failed"))
    }
}

/// Installs defmt-print into cargo's bin directory when it is missing (minutes, once).
fn ensure_defmt_print() -> Result<(), String> {
    if Command::new("defmt-print")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    println!(
        "xtask: installing defmt-print with `cargo install defmt-print --locked` (a few minutes, once)"
    );
    cargo(&["install", "defmt-print", "--locked"])
}

/// The host's target triple, from `rustc -vV`.
fn host_target() -> Result<String, String> {
    let version = command_stdout(Command::new("rustc").arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "`rustc -vV` names no host".to_owned())
}
