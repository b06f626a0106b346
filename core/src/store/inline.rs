//! The core's stores: state held inline, or behind a critical section.

use core::cell::RefCell;

use super::{seam::StateStore, watch::LocalHooks};
use crate::state::{BreakerState, OutcomeWindow};

/// State held inline, for a breaker owned by one task or thread: no lock, no atomics, the
/// fastest store. Not `Sync`; to share a breaker between an interrupt and a task use
/// [`CriticalSectionStore`].
///
/// `N` is the window capacity in outcomes, `W` the 32-bit words that hold them (see
/// [`OutcomeWindow`]).
#[derive(Debug, Default)]
pub struct InlineStore<const N: usize, const W: usize = 2> {
    // A RefCell rather than a Cell: the state changes in place instead of being copied out and
    // back. `update` never re-enters the store (hooks run after it returns): borrows never fail.
    state: RefCell<BreakerState<OutcomeWindow<N, W>>>,
}

impl<const N: usize, const W: usize> InlineStore<N, W> {
    /// A CLOSED breaker state with an empty window.
    pub const fn new() -> Self {
        InlineStore {
            state: RefCell::new(BreakerState::new()),
        }
    }
}

impl<const N: usize, const W: usize> StateStore for InlineStore<N, W> {
    type Window = OutcomeWindow<N, W>;

    #[inline]
    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
        change(&mut self.state.borrow_mut())
    }
}

impl<const N: usize, const W: usize> LocalHooks for InlineStore<N, W> {}

#[cfg(feature = "defmt")]
impl<const N: usize, const W: usize> defmt::Format for InlineStore<N, W> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "InlineStore({})", *self.state.borrow());
    }
}

/// State behind a critical section, so one `static` breaker is shared by tasks and interrupt
/// handlers. Each update is one short critical section; the protected call runs outside it.
///
/// ```
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, Ratio, ValidConfig, store::CriticalSectionStore,
///     time::Instant, state::OutcomeWindow,
/// };
///
/// const CONFIG: ValidConfig<OutcomeWindow<16>> =
///     BreakerConfig::new().failure_limit(Ratio::of::<3, 8>()).validated();
/// static SENSOR: CircuitProtector<CriticalSectionStore<16>, Instant> =
///     CircuitProtector::new(CONFIG, CriticalSectionStore::new(), Instant::ZERO);
/// # // The host needs a critical-section implementation to run this; building it is the point.
/// ```
#[derive(Debug)]
pub struct CriticalSectionStore<const N: usize, const W: usize = 2> {
    state: critical_section::Mutex<RefCell<BreakerState<OutcomeWindow<N, W>>>>,
}

impl<const N: usize, const W: usize> CriticalSectionStore<N, W> {
    /// A CLOSED breaker state with an empty window; usable in a `static`.
    pub const fn new() -> Self {
        CriticalSectionStore {
            state: critical_section::Mutex::new(RefCell::new(BreakerState::new())),
        }
    }
}

impl<const N: usize, const W: usize> Default for CriticalSectionStore<N, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const W: usize> StateStore for CriticalSectionStore<N, W> {
    type Window = OutcomeWindow<N, W>;

    #[inline]
    fn update<R>(&self, change: impl FnOnce(&mut BreakerState<Self::Window>) -> R) -> R {
        critical_section::with(|cs| change(&mut self.state.borrow_ref_mut(cs)))
    }
}

impl<const N: usize, const W: usize> LocalHooks for CriticalSectionStore<N, W> {}

#[cfg(feature = "defmt")]
impl<const N: usize, const W: usize> defmt::Format for CriticalSectionStore<N, W> {
    fn format(&self, f: defmt::Formatter<'_>) {
        let state = critical_section::with(|cs| *self.state.borrow_ref(cs));
        defmt::write!(f, "CriticalSectionStore({})", state);
    }
}
