//! Sizes the contract promises.

use std::mem::size_of;

use resilient_circuit::{BreakerState, Error, OutcomeWindow, Rejected};

#[test]
fn breaker_state_with_a_64_outcome_window_fits_in_32_bytes() {
    assert!(
        size_of::<BreakerState<OutcomeWindow<64>>>() <= 32,
        "{} bytes",
        size_of::<BreakerState<OutcomeWindow<64>>>()
    );
}

#[test]
fn outcome_window_is_one_bit_per_outcome_plus_four_bytes() {
    assert_eq!(size_of::<OutcomeWindow<64>>(), 12);
    assert_eq!(size_of::<OutcomeWindow<1000, 32>>(), 132);
}

#[test]
fn rejection_is_a_small_value() {
    // A `Duration` as two u32 halves, and a one-byte reason.
    assert_eq!(size_of::<Rejected>(), 12);
    assert!(size_of::<Error<()>>() <= 16);
}
