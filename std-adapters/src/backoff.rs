//! Backoffs: the core's, and a jitter generator seeded from the operating system's randomness.

#[doc(no_inline)]
pub use resilient_circuit::backoff::{
    Backoff, BackoffError, DecorrelatedJitter, ExponentialDelay, FixedDelay, FullJitter, NoBackoff,
    NoJitter, SplitMix64, UniformJitter,
};

/// A [`SplitMix64`] seeded from the operating system's randomness, different at every call, so
/// that no two processes of a fleet (nor two retries of one process) jitter in lockstep.
///
/// The seed is std's `RandomState`: hasher keys the standard library draws from the operating
/// system once per thread and moves on at every call.
///
/// ```
/// use resilient_circuit_std::backoff::{entropy_seeded, ExponentialDelay};
/// use resilient_circuit_std::rand_core::Rng;
/// use resilient_circuit_std::fixed_point::U1F31;
/// use std::time::Duration;
///
/// let backoff = ExponentialDelay::new(Duration::from_millis(100), Duration::from_secs(2))?
///     .with_jitter(U1F31::from_num(0.5), entropy_seeded())?;
/// # drop(backoff);
/// assert_ne!(entropy_seeded().next_u64(), entropy_seeded().next_u64());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn entropy_seeded() -> SplitMix64 {
    use std::hash::BuildHasher;
    SplitMix64::new(std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64))
}
