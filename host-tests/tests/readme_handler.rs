//! The README shows the axum example's handler: every line it shows (but the one marking what
//! it leaves out) is the example's, in the example's order, so the two cannot drift apart.

const README: &str = include_str!("../../README.md");
const EXAMPLE: &str = include_str!("../../std-adapters/examples/axum_service.rs");
const MARK: &str = "<!-- the axum handler:";

#[test]
fn the_readmes_axum_handler_is_the_examples() {
    let after_mark = README
        .split_once(MARK)
        .expect("the README marks the handler")
        .1;
    let block = after_mark
        .split_once("```rust,ignore\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a rust block after the mark")
        .0;
    let mut rest = EXAMPLE;
    let mut shown = 0;
    for line in block
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with("// ..."))
    {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("a README line not in the example, in order: {line}"));
        rest = &rest[at + line.len()..];
        shown += 1;
    }
    assert!(shown > 30, "the block shows the handler ({shown} lines)");
}
