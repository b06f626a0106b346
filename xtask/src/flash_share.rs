//! The library's own share of a firmware image's flash.
//!
//! With LTO most of the library is inlined into the firmware's task, so its symbols alone
//! undercount it; and a HAL's future is inlined into the library's, so whole symbols overcount
//! it. The share is read from the disassembly with its line table: every byte of `.text` whose
//! source line is in the library's sources, wherever it was inlined, plus the bytes of the
//! library's own functions that have no line at all.

use std::{collections::BTreeMap, path::Path, process::Command};

use crate::command_stdout;

/// Symbols of the 64-bit division `compiler_builtins` links in when code divides a `u64` or
/// an `i64` on a 32-bit target (ARM's and RISC-V's entry points, and the implementation).
const U64_DIVISION: [&str; 10] = [
    "__aeabi_uldivmod",
    "__aeabi_ldivmod",
    "__udivmoddi4",
    "__divmoddi4",
    "__udivdi3",
    "__umoddi3",
    "__divdi3",
    "__moddi3",
    "u64_div_rem",
    "i64_div_rem",
];

/// Bytes of a firmware image's `.text` attributed to the library.
pub struct FlashShare {
    /// The library's functions that kept a symbol, with their library bytes (code inlined into
    /// them from other crates is not counted), largest first.
    pub functions: Vec<(String, u64)>,
    /// Library code inlined into other functions, per source file (relative to the library's
    /// source directory).
    pub inlined: BTreeMap<String, u64>,
    /// The library's bytes by piece (see [`piece_of`]), whether in its functions or inlined.
    pub pieces: BTreeMap<&'static str, u64>,
    /// The bytes of the 64-bit division helpers in the image, whoever calls them.
    pub u64_division: u64,
}

/// The piece of the library a source file (relative to its `src`) belongs to, as a firmware
/// author weighs them: the breaker (with its state machine and stores), the retry, its backoff,
/// the jitters and their generator, the bus wrapper, the composition, time, and what they share.
pub fn piece_of(file: &str) -> &'static str {
    match file.split_once('/') {
        Some(("breaker" | "state" | "store", _)) => "breaker",
        Some(("retry", _)) => "retry",
        Some(("backoff", "jitter.rs" | "rng.rs")) => "jitter",
        Some(("backoff", _)) => "backoff",
        Some(("bus", _)) => "bus wrapper",
        Some(("compose", _)) => "composition",
        Some(("time", _)) => "time",
        _ => "shared (errors, classifiers, division)",
    }
}

/// The piece a library function belongs to when the line table names no library file for its
/// bytes: by its module path (`resilient_circuit::retry::policy::...` is the retry's).
fn piece_of_function(name: &str, crate_name: &str) -> &'static str {
    let path = name.trim_start_matches('<');
    let module = path
        .strip_prefix(crate_name)
        .and_then(|rest| rest.strip_prefix("::"))
        .and_then(|rest| rest.split_once("::"))
        .map_or("", |(module, rest)| match module {
            "backoff" => rest.split("::").next().unwrap_or(""),
            other => other,
        });
    match module {
        "jitter" | "rng" => "jitter",
        "delay" | "exponential" => "backoff",
        "" => "shared (errors, classifiers, division)",
        module => piece_of(&format!("{module}/")),
    }
}

impl FlashShare {
    /// The library's bytes in all: its functions and its code inlined elsewhere.
    pub fn total(&self) -> u64 {
        self.functions.iter().map(|(_, bytes)| bytes).sum::<u64>()
            + self.inlined.values().sum::<u64>()
    }
}

/// Where the line table says the instructions that follow come from.
enum Source {
    /// A file of the library's sources (relative to its `src`).
    Library(String),
    /// Another crate's source: the firmware's, a dependency's, `core`'s.
    Elsewhere,
    /// No line: the function's own start-up code, or no debug info.
    Unknown,
}

/// Whose a function's bytes are.
enum Owner {
    /// `compiler_builtins`' 64-bit division.
    Division,
    /// The library's, under this readable name.
    Library(String),
    /// The firmware's or a dependency's: the line table says which bytes are the library's.
    Other,
}

/// Reads `elf` with the LLVM tools in `llvm_bin`; `library_src` is the library's `src`
/// directory as the debug info names it, and `crate_name` its symbol prefix.
pub fn flash_share(
    llvm_bin: &Path,
    elf: &Path,
    library_src: &Path,
    crate_name: &str,
) -> Result<FlashShare, String> {
    let disassembly = command_stdout(
        Command::new(llvm_bin.join("llvm-objdump"))
            .args(["-d", "-l", "--demangle", "--section=.text"])
            .arg(elf),
    )?;
    Ok(share_of(
        &disassembly,
        &format!("{}/", library_src.display()),
        crate_name,
    ))
}

/// The library's share of `disassembly` (`llvm-objdump -d -l`'s text), the library's sources
/// being the files under `prefix`.
fn share_of(disassembly: &str, prefix: &str, crate_name: &str) -> FlashShare {
    let mut functions: BTreeMap<String, u64> = BTreeMap::new();
    let mut inlined = BTreeMap::new();
    let mut pieces = BTreeMap::new();
    let mut u64_division = 0;
    // Whose the current function's bytes are, decided once at its header.
    let mut owner = Owner::Other;
    let mut source = Source::Unknown;
    for line in disassembly.lines() {
        if let Some(location) = line.strip_prefix("; ") {
            // "; /path/to/file.rs:LINE": the source of the instructions that follow.
            source = match location.rsplit_once(':') {
                Some((path, _)) => path
                    .strip_prefix(prefix)
                    .map_or(Source::Elsewhere, |file| Source::Library(file.to_owned())),
                None => Source::Unknown,
            };
        } else if let Some(header) = line.strip_suffix(">:") {
            // "000007f0 <name>:": a function starts.
            let function = header.split_once(" <").map_or("", |(_, name)| name);
            owner = if U64_DIVISION.iter().any(|helper| function.contains(helper)) {
                Owner::Division
            } else if is_library_function(function, crate_name) {
                Owner::Library(readable(function))
            } else {
                Owner::Other
            };
            source = Source::Unknown;
        } else if let Some(bytes) = instruction_bytes(line) {
            match (&owner, &source) {
                (Owner::Division, _) => u64_division += bytes,
                // Another crate's code inlined into the library's function: not the library's.
                (Owner::Library(_), Source::Elsewhere) => {}
                (Owner::Library(name), _) => {
                    *functions.entry(name.clone()).or_insert(0) += bytes;
                    let piece = match &source {
                        Source::Library(file) => piece_of(file),
                        _ => piece_of_function(name, crate_name),
                    };
                    *pieces.entry(piece).or_insert(0) += bytes;
                }
                (Owner::Other, Source::Library(file)) => {
                    *inlined.entry(file.clone()).or_insert(0) += bytes;
                    *pieces.entry(piece_of(file)).or_insert(0) += bytes;
                }
                (Owner::Other, _) => {}
            }
        }
    }
    let mut functions: Vec<(String, u64)> = functions.into_iter().collect();
    functions.sort_by_key(|function| std::cmp::Reverse(function.1));
    FlashShare {
        functions,
        inlined,
        pieces,
        u64_division,
    }
}

/// Whether `function` is the library's own: its path starts with the crate (an inherent or
/// free function), or it is the library's type implementing a trait. A firmware type
/// implementing a library trait is the firmware's; the line table still credits the library
/// with what of it came from the library.
fn is_library_function(function: &str, crate_name: &str) -> bool {
    let name = readable(function);
    name.starts_with(&format!("{crate_name}::")) || name.starts_with(&format!("<{crate_name}::"))
}

/// A symbol as objdump demangles Rust's legacy mangling, made readable: `$LT$` to `<` and so
/// on, without the trailing hash.
fn readable(symbol: &str) -> String {
    let without_hash = match symbol.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => symbol,
    };
    let mut name = without_hash.to_owned();
    for (escape, text) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$C$", ","),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ] {
        name = name.replace(escape, text);
    }
    name.strip_prefix('_')
        .filter(|rest| rest.starts_with('<'))
        .map_or(name.clone(), str::to_owned)
}

/// The size of the instruction (or literal) on a disassembly line such as
/// `    1462: f001 fa4b    \tbl\t0x28fc`, from its encoding; `None` for any other line.
fn instruction_bytes(line: &str) -> Option<u64> {
    let (address, rest) = line.trim_start().split_once(": ")?;
    if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let encoding = rest.split('\t').next()?;
    let digits: usize = encoding
        .split_whitespace()
        .map(|group| {
            group
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then_some(group.len())
        })
        .sum::<Option<usize>>()?;
    (digits > 0 && digits.is_multiple_of(2)).then_some(digits as u64 / 2)
}

#[cfg(test)]
mod tests {
    use super::{
        instruction_bytes, is_library_function, piece_of, piece_of_function, readable, share_of,
    };

    /// A library function with a HAL's code inlined into it, and a firmware function with the
    /// library's code inlined into it: the library is credited with its own lines in both, and
    /// with the bytes of its function that have no line, never with the HAL's.
    #[test]
    fn the_share_is_the_librarys_lines_wherever_they_were_inlined() {
        let disassembly = "\
00000100 <resilient_circuit::bus::async_i2c::poll::h0123456789abcdef>:
     100: b580         \tpush\t{r7, lr}
; /src/core/bus/async_i2c.rs:20
     102: 4608         \tmov\tr0, r1
     104: f000 f801    \tbl\t0x10a
; /registry/embassy-rp-0.10.0/src/i2c.rs:700
     108: 6800         \tldr\tr0, [r0]
     10a: 6800         \tldr\tr0, [r0]
     10c: 6800         \tldr\tr0, [r0]
; /src/core/state/machine.rs:300
     10e: bd80         \tpop\t{r7, pc}

00000110 <firmware::main::h0123456789abcdef>:
     110: b580         \tpush\t{r7, lr}
; /src/core/retry/policy.rs:250
     112: 4608         \tmov\tr0, r1
; /firmware/src/main.rs:10
     114: bd80         \tpop\t{r7, pc}
";
        let share = share_of(disassembly, "/src/core/", "resilient_circuit");
        assert_eq!(
            share.functions,
            [("resilient_circuit::bus::async_i2c::poll".to_owned(), 10)]
        );
        assert_eq!(share.inlined.get("retry/policy.rs"), Some(&2));
        assert_eq!(share.pieces.get("bus wrapper"), Some(&8));
        assert_eq!(share.pieces.get("breaker"), Some(&2));
        assert_eq!(share.total(), 12);
    }

    #[test]
    fn code_is_the_piece_its_source_file_or_module_is() {
        for (file, piece) in [
            ("breaker/protector.rs", "breaker"),
            ("state/machine.rs", "breaker"),
            ("store/inline.rs", "breaker"),
            ("retry/stage.rs", "retry"),
            ("backoff/exponential.rs", "backoff"),
            ("backoff/jitter.rs", "jitter"),
            ("backoff/rng.rs", "jitter"),
            ("bus/async_i2c.rs", "bus wrapper"),
            ("compose/stack.rs", "composition"),
            ("time/embassy.rs", "time"),
            ("divide.rs", "shared (errors, classifiers, division)"),
        ] {
            assert_eq!(piece_of(file), piece, "{file}");
        }
        for (function, piece) in [
            (
                "resilient_circuit::state::machine::BreakerState<Win>::enter_open",
                "breaker",
            ),
            (
                "<resilient_circuit::backoff::jitter::FullJitter<R> as resilient_circuit::backoff::delay::Backoff>::delay",
                "jitter",
            ),
            (
                "<resilient_circuit::backoff::exponential::ExponentialDelay as resilient_circuit::backoff::delay::Backoff>::delay",
                "backoff",
            ),
            (
                "resilient_circuit::retry::attempt::Attempt<T,E>::of",
                "retry",
            ),
            (
                "resilient_circuit::error::Rejected::retry_after",
                "shared (errors, classifiers, division)",
            ),
        ] {
            assert_eq!(
                piece_of_function(function, "resilient_circuit"),
                piece,
                "{function}"
            );
        }
    }

    #[test]
    fn a_function_is_the_librarys_when_its_path_or_its_type_is() {
        let library = [
            "resilient_circuit::state::BreakerState$LT$Win$GT$::record_in_period::hd7b5e4697dffbc4a",
            "_$LT$resilient_circuit..compose..Run2$LT$E$GT$$u20$as$u20$core..ops..Drop$GT$::drop::h7942cc71bdd4e8c4",
        ];
        let firmware = [
            "_$LT$embassy_example..sleep..WholeMillis$LT$S$GT$$u20$as$u20$resilient_circuit..time..AsyncSleep$GT$::sleep::h7942cc71bdd4e8c4",
            "core::ptr::drop_in_place$LT$resilient_circuit..bus..ProtectedBus$GT$::h7942cc71bdd4e8c4",
        ];
        assert!(
            library
                .iter()
                .all(|f| is_library_function(f, "resilient_circuit"))
        );
        assert!(
            !firmware
                .iter()
                .any(|f| is_library_function(f, "resilient_circuit"))
        );
    }

    #[test]
    fn a_symbol_is_made_readable() {
        assert_eq!(
            readable(
                "_$LT$resilient_circuit..compose..Run2$LT$E$C$L0$GT$$u20$as$u20$core..ops..Drop$GT$::drop::h7942cc71bdd4e8c4"
            ),
            "<resilient_circuit::compose::Run2<E,L0> as core::ops::Drop>::drop"
        );
        assert_eq!(
            readable(
                "resilient_circuit::state::BreakerState$LT$Win$GT$::record_in_period::hd7b5e4697dffbc4a"
            ),
            "resilient_circuit::state::BreakerState<Win>::record_in_period"
        );
    }

    #[test]
    fn an_instructions_size_is_read_from_its_encoding() {
        assert_eq!(
            instruction_bytes("    1462: f001 fa4b    \tbl\t0x28fc <__aeabi_uldivmod>"),
            Some(4)
        );
        assert_eq!(
            instruction_bytes("    2a48: d37a         \tblo\t0x2b40"),
            Some(2)
        );
        assert_eq!(
            instruction_bytes("    2b50: 00 ca 9a 3b  \t.word\t0x3b9aca00"),
            Some(4)
        );
        assert_eq!(instruction_bytes("000007f0 <main>:"), None);
        assert_eq!(instruction_bytes("; /src/lib.rs:12"), None);
        assert_eq!(instruction_bytes(""), None);
    }
}
