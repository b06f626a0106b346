//! State behind an `embassy-sync` blocking mutex: 0.8 (feature `embassy-sync`) or 0.7 (feature
//! `embassy-sync-07`, for HALs one release back), one store each, with the application's raw
//! mutex of the same version.

use core::cell::RefCell;

use super::{seam::StateStore, watch::LocalHooks};
use crate::state::{BreakerState, OutcomeWindow};

/// The store over one version of `embassy-sync`: `$krate` is its crate.
macro_rules! raw_mutex_store {
    ($(#[$doc:meta])* $name:ident, $krate:ident) => {
        $(#[$doc])*
        pub struct $name<M, const N: usize, const W: usize = 2> {
            // A RefCell inside: the mutex hands out a shared reference. `update` never
            // re-enters the store (hooks run after it returns), so borrows never fail.
            state: $krate::blocking_mutex::Mutex<M, RefCell<BreakerState<OutcomeWindow<N, W>>>>,
        }

        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize>
            $name<M, N, W>
        {
            /// A CLOSED breaker state with an empty window; usable in a `static`.
            pub const fn new() -> Self {
                $name {
                    state: $krate::blocking_mutex::Mutex::new(RefCell::new(BreakerState::new())),
                }
            }
        }

        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize> Default
            for $name<M, N, W>
        {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize> StateStore
            for $name<M, N, W>
        {
            type Window = OutcomeWindow<N, W>;

            #[inline]
            fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
                self.state.lock(|state| change(&mut state.borrow_mut()))
            }
        }

        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize> LocalHooks
            for $name<M, N, W>
        {
        }

        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize>
            core::fmt::Debug for $name<M, N, W>
        {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let state = self.state.lock(|state| *state.borrow());
                f.debug_tuple(stringify!($name)).field(&state).finish()
            }
        }

        #[cfg(feature = "defmt")]
        impl<M: $krate::blocking_mutex::raw::RawMutex, const N: usize, const W: usize>
            defmt::Format for $name<M, N, W>
        {
            fn format(&self, f: defmt::Formatter<'_>) {
                let state = self.state.lock(|state| *state.borrow());
                defmt::write!(f, "{}({})", stringify!($name), state);
            }
        }
    };
}

#[cfg(feature = "embassy-sync")]
raw_mutex_store! {
    /// State behind an `embassy-sync` 0.8 blocking `Mutex` (feature `embassy-sync`), so the sharing
    /// costs only what the raw mutex `M` costs (for `embassy-sync` 0.7, which HALs one release back
    /// use, the same store is `RawMutexStore07`, feature `embassy-sync-07`):
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
    RawMutexStore, embassy_sync
}

#[cfg(feature = "embassy-sync-07")]
raw_mutex_store! {
    /// `RawMutexStore`'s twin for `embassy-sync` 0.7 (feature `embassy-sync-07`), the version
    /// HALs one release back use (embassy-rp 0.9, embassy-stm32 0.5, esp-hal 1.0): give it the
    /// application's raw mutex, of that version.
    ///
    /// ```
    /// use embassy_sync_07::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
    /// use resilient_circuit::{
    ///     Breaker, BreakerConfig, CircuitProtector, CircuitState, Ratio, ValidConfig,
    ///     state::OutcomeWindow, store::RawMutexStore07, time::Instant,
    /// };
    ///
    /// const CONFIG: ValidConfig<OutcomeWindow<16>> =
    ///     BreakerConfig::new().failure_limit(Ratio::of::<2, 2>()).validated();
    ///
    /// let sensor = CircuitProtector::new(CONFIG, RawMutexStore07::<NoopRawMutex, 16>::new(), Instant::ZERO);
    /// let _ = sensor.call(|| Err::<(), _>("nak"));
    /// let _ = sensor.call(|| Err::<(), _>("nak"));
    /// assert_eq!(sensor.status(), CircuitState::Open);
    ///
    /// static BUS: CircuitProtector<RawMutexStore07<CriticalSectionRawMutex, 16>, Instant> =
    ///     CircuitProtector::new(CONFIG, RawMutexStore07::new(), Instant::ZERO);
    /// ```
    RawMutexStore07, embassy_sync_07
}
