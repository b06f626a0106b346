//! Sizes the contract promises.

use std::mem::size_of;

use resilient_circuit::{
    Error, Rejected,
    state::{BreakerState, OutcomeWindow},
};

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
    // A `Duration` as two u32 halves, the reason in the nanoseconds' two spare bits.
    assert_eq!(size_of::<Rejected>(), 8);
    assert_eq!(size_of::<resilient_circuit::Elapsed>(), 8);
    assert!(size_of::<Error<()>>() <= 12);
}

#[test]
fn a_rejection_keeps_its_wait_and_reason_exactly() {
    use resilient_circuit::RejectReason;
    use std::time::Duration;
    let longest = Duration::new(u64::from(u32::MAX), 999_999_999);
    for reason in [
        RejectReason::Open,
        RejectReason::ProbesBusy,
        RejectReason::StoreUnavailable,
    ] {
        for wait in [
            Duration::ZERO,
            Duration::from_nanos(999_999_999),
            Duration::from_millis(3_500),
            longest,
        ] {
            let rejected = Rejected::new(wait, reason);
            assert_eq!((rejected.retry_after(), rejected.reason()), (wait, reason));
        }
        // Longer waits saturate at about 136 years.
        let saturated = Rejected::new(Duration::MAX, reason);
        assert_eq!(saturated.retry_after().as_secs(), u64::from(u32::MAX));
        assert_eq!(saturated.reason(), reason);
    }
}
