//! State behind an `embassy-sync` blocking mutex (feature `embassy-sync`).

use core::cell::RefCell;

use embassy_sync::blocking_mutex::{Mutex, raw::RawMutex};

use super::{seam::StateStore, watch::LocalHooks};
use crate::state::{BreakerState, OutcomeWindow};

/// State behind an `embassy-sync` blocking [`Mutex`], so the sharing costs only what the
/// raw mutex `M` costs:
///
/// - `NoopRawMutex`: shared by the tasks of one executor, no interrupt touching it; no
///   critical section at all. Not `Sync`, so the compiler keeps it to one executor.
/// - `ThreadModeRawMutex`: shared by thread-mode code (every task of thread-mode executors);
///   no critical section. Using it from an interrupt handler panics.
/// - `CriticalSectionRawMutex`: shared with interrupt handlers too, as a
///   [`CriticalSectionStore`](crate::store::CriticalSectionStore) is.
///
/// `N` is the window capacity in outcomes, `W` the 32-bit words that hold them (see
/// [`OutcomeWindow`]). Each update is one short lock; the protected call runs outside it.
///
/// ```
/// use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
/// use resilient_circuit::{
///     Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio, ValidConfig,
///     state::OutcomeWindow, store::RawMutexStore, time::Instant,
/// };
///
/// const CONFIG: ValidConfig<OutcomeWindow<16>> =
///     BreakerConfig::new().failure_limit(Ratio::of::<2, 2>()).validated();
///
/// // One executor's tasks share this breaker: no critical section on any call.
/// let sensor = CircuitProtector::new(CONFIG, RawMutexStore::<NoopRawMutex, 16>::new(), Instant::ZERO);
/// let _ = sensor.call(|| Err::<(), _>("nak"));
/// let _ = sensor.call(|| Err::<(), _>("nak"));
/// assert_eq!(sensor.status(), CircuitState::Open);
///
/// // Shared with an interrupt handler: a `static` behind critical sections.
/// static BUS: CircuitProtector<RawMutexStore<CriticalSectionRawMutex, 16>, Instant> =
///     CircuitProtector::new(CONFIG, RawMutexStore::new(), Instant::ZERO);
/// ```
///
/// A `NoopRawMutex` store is not `Sync`, so it cannot be such a `static`:
///
/// ```compile_fail
/// use embassy_sync::blocking_mutex::raw::NoopRawMutex;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, Ratio, ValidConfig, state::OutcomeWindow,
///     store::RawMutexStore, time::Instant,
/// };
///
/// const CONFIG: ValidConfig<OutcomeWindow<16>> =
///     BreakerConfig::new().failure_limit(Ratio::of::<2, 2>()).validated();
/// static BUS: CircuitProtector<RawMutexStore<NoopRawMutex, 16>, Instant> =
///     CircuitProtector::new(CONFIG, RawMutexStore::new(), Instant::ZERO);
/// ```
pub struct RawMutexStore<M, const N: usize, const W: usize = 2> {
    // A RefCell inside: the mutex hands out a shared reference. `update` never re-enters the
    // store (hooks run after it returns), so borrows never fail.
    state: Mutex<M, RefCell<BreakerState<OutcomeWindow<N, W>>>>,
}

impl<M: RawMutex, const N: usize, const W: usize> RawMutexStore<M, N, W> {
    /// A CLOSED breaker state with an empty window; usable in a `static`.
    pub const fn new() -> Self {
        RawMutexStore {
            state: Mutex::new(RefCell::new(BreakerState::new())),
        }
    }
}

impl<M: RawMutex, const N: usize, const W: usize> Default for RawMutexStore<M, N, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex, const N: usize, const W: usize> StateStore for RawMutexStore<M, N, W> {
    type Window = OutcomeWindow<N, W>;

    #[inline]
    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
        self.state.lock(|state| change(&mut state.borrow_mut()))
    }
}

impl<M: RawMutex, const N: usize, const W: usize> LocalHooks for RawMutexStore<M, N, W> {}

impl<M: RawMutex, const N: usize, const W: usize> core::fmt::Debug for RawMutexStore<M, N, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = self.state.lock(|state| *state.borrow());
        f.debug_tuple("RawMutexStore").field(&state).finish()
    }
}

#[cfg(feature = "defmt")]
impl<M: RawMutex, const N: usize, const W: usize> defmt::Format for RawMutexStore<M, N, W> {
    fn format(&self, f: defmt::Formatter<'_>) {
        let state = self.state.lock(|state| *state.borrow());
        defmt::write!(f, "RawMutexStore({})", state);
    }
}
