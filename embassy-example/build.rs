//! Puts the board's memory map where the linker finds it, as `memory.x` (the runtime crate's
//! `link.x` includes it): `memory-cortex-m.x` for the Cortex-M board, `memory-riscv.x` for RISC-V;
//! and `discard-unwind.x`, which the RISC-V link adds.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let memory: &[u8] = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("riscv32") => include_bytes!("memory-riscv.x"),
        _ => include_bytes!("memory-cortex-m.x"),
    };
    fs::write(out.join("memory.x"), memory).expect("OUT_DIR is writable");
    let discard: &[u8] = include_bytes!("discard-unwind.x");
    fs::write(out.join("discard-unwind.x"), discard).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-cortex-m.x");
    println!("cargo:rerun-if-changed=memory-riscv.x");
    println!("cargo:rerun-if-changed=discard-unwind.x");
}
