//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `test`: every test: the host tests (unit, integration, property, concurrency, doc tests),
//!   the loom model, the README's examples, and the core built for `thumbv7em-none-eabihf` with
//!   and without `defmt`.
//! - `bench`: the criterion benchmarks.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

/// The firmware target the core must build for.
const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

/// The README's examples and the lines each must print: the whole CLOSED -> OPEN -> HALF_OPEN
/// -> CLOSED cycle, and (in process) rejections that say when to retry.
const EXAMPLES: [Example; 2] = [
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
];

struct Example {
    package: &'static str,
    name: &'static str,
    features: &'static str,
    must_show: &'static [&'static str],
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
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

fn usage() -> &'static str {
    "usage: cargo xtask <task>\n\n\
     tasks:\n  \
     test    run every test (host tests, loom, the README examples, firmware builds of the core)\n  \
     bench   run the criterion benchmarks (extra arguments go to criterion)"
}

fn test() -> Result<(), String> {
    step("host tests", || cargo(&["test", "--workspace"]))?;
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
    for features in ["", "defmt", "defmt,embassy"] {
        let mut args = vec![
            "build",
            "-p",
            "resilient-circuit",
            "--target",
            FIRMWARE_TARGET,
        ];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        let label = format!(
            "core for {FIRMWARE_TARGET} (features: {})",
            or_none(features)
        );
        step(&label, || cargo(&args))?;
    }
    println!("\nxtask: all tests passed");
    Ok(())
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench", "-p", "host-tests"];
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

fn step(label: &str, run: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("\nxtask: == {label} ==");
    run().map_err(|e| format!("{label}: {e}"))
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let status = Command::new(cargo_bin())
        .current_dir(workspace_root())
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
