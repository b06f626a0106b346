//! A one-word digest of a breaker state, for stores with a lock-free hot path.

use crate::{
    BreakerConfig, CircuitState,
    state::{Admission, BreakerState, Window},
};

/// What a lock-free reader needs to know about a [`BreakerState`], packed into 64 bits so a
/// thread-shared store can publish it in one atomic after every change it makes under its lock.
///
/// From it alone a reader can admit a CLOSED call, and recognise a success that would change
/// nothing (CLOSED, same period, a full window of successes, no consecutive failures): the two
/// things a healthy service's calls do. Everything else goes through the store's lock (a store
/// may also count other CLOSED successes and fold them in later with
/// [`BreakerState::record_closed_successes`](crate::state::BreakerState::record_closed_successes)).
///
/// ```
/// use resilient_circuit::{BreakerConfig, Ratio, state::{BreakerState, OutcomeWindow}, store::FastPath, time::Instant, classify::Verdict};
///
/// let config = BreakerConfig::new().failure_limit(Ratio::of::<1, 2>());
/// let mut state = BreakerState::<OutcomeWindow<64>>::new();
/// for _ in 0..2 {
///     let (admission, _) = state.admit(&config, &Instant::ZERO).unwrap();
///     state.record(&config, admission, Verdict::Success, &Instant::ZERO);
/// }
/// let digest = FastPath::of(&state, &config);
/// let admission = digest.admit().expect("CLOSED admits without the lock");
/// assert!(digest.success_changes_nothing(admission));
/// assert_eq!(FastPath::from_bits(digest.to_bits()), digest);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FastPath(u64);

// Layout: epoch in bits 0..32, state in 48..50, "clean" in bit 50, "held" in bit 51.
const STATE_SHIFT: u32 = 48;
const CLEAN: u64 = 1 << 50;
const HELD: u64 = 1 << 51;

impl FastPath {
    /// The digest of `state` under `config`: "clean" (a success is a no-op) is judged with
    /// `config`'s window, so a store takes the digest with the configuration it records with.
    pub fn of<Win: Window>(state: &BreakerState<Win>, config: &BreakerConfig) -> Self {
        let window = state.window();
        let clean = state.status() == CircuitState::Closed
            && window.len() == config.closed_window()
            && !window.has_failures()
            && state.failure_count() == 0;
        let state_bits = match state.status() {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        FastPath(state.epoch() as u64 | state_bits << STATE_SHIFT | if clean { CLEAN } else { 0 })
    }

    /// The state the digest was taken in.
    pub const fn status(self) -> CircuitState {
        match (self.0 >> STATE_SHIFT) & 0b11 {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// The admission a CLOSED state grants (it changes nothing); `None` in any other state,
    /// and when the digest is [`held`](Self::held).
    #[inline]
    pub const fn admit(self) -> Option<Admission> {
        // State bits 0 (CLOSED) and the held bit clear, in one test.
        if (self.0 >> STATE_SHIFT) & 0b1011 == 0 {
            Some(Admission::in_period(self.0 as u32, false))
        } else {
            None
        }
    }

    /// The same digest, but one that admits nothing and calls no success a no-op: every call
    /// goes to the store's lock. A replicated store holds its digest while it cannot vouch for
    /// the state (failing closed during an outage).
    ///
    /// ```
    /// use resilient_circuit::{BreakerConfig, CircuitState, state::{BreakerState, OutcomeWindow}, store::FastPath};
    ///
    /// let digest = FastPath::of(&BreakerState::<OutcomeWindow<64>>::new(), &BreakerConfig::new());
    /// assert!(digest.admit().is_some());
    /// assert_eq!(digest.held().admit(), None);
    /// assert_eq!(digest.held().status(), CircuitState::Closed);
    /// ```
    pub const fn held(self) -> Self {
        FastPath((self.0 | HELD) & !CLEAN)
    }

    /// The same digest, but one in which no success is a no-op: a replicated store must still
    /// count successes that would not change its own copy, because they change the shared one.
    ///
    /// ```
    /// use resilient_circuit::{BreakerConfig, Ratio, state::{BreakerState, OutcomeWindow}, store::FastPath, classify::Verdict, time::Instant};
    ///
    /// let config = BreakerConfig::new().failure_limit(Ratio::of::<1, 1>());
    /// let mut state = BreakerState::<OutcomeWindow<64>>::new();
    /// let (admission, _) = state.admit(&config, &Instant::ZERO).unwrap();
    /// state.record(&config, admission, Verdict::Success, &Instant::ZERO);
    /// let digest = FastPath::of(&state, &config);
    /// assert!(digest.success_changes_nothing(admission));
    /// assert!(!digest.counting().success_changes_nothing(admission));
    /// assert_eq!(digest.counting().admit(), Some(admission));
    /// ```
    pub const fn counting(self) -> Self {
        FastPath(self.0 & !CLEAN)
    }

    /// Whether recording a success for `admission` would leave the state exactly as it is,
    /// under the configuration the digest was taken with.
    #[inline]
    pub const fn success_changes_nothing(self, admission: Admission) -> bool {
        self.0 & CLEAN != 0 && admission.epoch() == self.0 as u32 && !admission.is_probe()
    }

    /// The digest as bits, for an `AtomicU64`.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// A digest from [`to_bits`](Self::to_bits).
    pub const fn from_bits(bits: u64) -> Self {
        FastPath(bits)
    }
}
