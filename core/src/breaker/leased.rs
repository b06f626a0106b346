//! A breaker whose probe slots come back by their lease, not by the call giving them back: by
//! reference, a stage whose ticket needs no drop.

use core::{future::Future, ops::Deref, time::Duration};

use super::{
    as_stage::breaker_stage_rest, call::Breaker, config::ConfigError, protector::CircuitProtector,
};
use crate::{
    AsyncPolicy, Classify, ClassifyValue, Error, Policy, TransitionHook, classify,
    compose::{AsyncOperation, AsyncStack, AsyncStage, BlockingStack, BlockingStage, Leave, Stage},
    state::Admission,
    store::StateStore,
    time::Clock,
};

/// A breaker with a [probe lease](crate::BreakerConfig::probe_lease), which by reference is a
/// stage that leaves a probe slot to the lease when a call ends without an outcome (its future
/// dropped, or a panic), rather than giving the slot back itself.
///
/// `&leased`'s ticket is a plain [`Admission`], so a stack of it and other plain stages (a
/// [`RetryWithBackoff`](crate::RetryWithBackoff)) makes a future with no drop code: on a
/// firmware, the futures that hold it (a driver's, a task's) carry none for it either. With a
/// plain `&breaker` as the stage, a dropped probe gives its slot back at once. Outcomes are
/// recorded the same way, and everything else is the breaker's, through `Deref`.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, RetryWithBackoff, SafetyNet, ValidConfig,
///     breaker::Leased, state::OutcomeWindow, store::CriticalSectionStore, time::Instant,
/// };
///
/// const CONFIG: ValidConfig<OutcomeWindow<8>> =
///     BreakerConfig::new().probe_lease(Duration::from_secs(1)).validated();
/// // Checked at compile time: without a lease, this does not build.
/// static SENSOR: Leased<CircuitProtector<CriticalSectionStore<8>, Instant>> =
///     Leased::validated(CircuitProtector::new(CONFIG, CriticalSectionStore::new(), Instant::ZERO));
///
/// // The net a firmware's bus runs its transactions through (`bus::ProtectedBus`).
/// let _net = SafetyNet::new((RetryWithBackoff::new(2), &SENSOR));
/// # // The host needs a critical-section implementation to call it; building it is the point.
/// ```
///
/// Called through, on any store:
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, CircuitState, Policy, RetryWithBackoff, SafetyNet,
///     breaker::Leased, store::InlineStore, time::Instant,
/// };
///
/// let config = BreakerConfig::new().probe_lease(Duration::from_secs(1)).validate().unwrap();
/// let sensor = Leased::new(CircuitProtector::new(config, InlineStore::<8>::new(), Instant::ZERO))?;
/// let mut net = SafetyNet::new((RetryWithBackoff::new(2), &sensor));
/// assert_eq!(net.call(|| Ok::<_, &str>(7)), Ok(7));
/// assert_eq!(sensor.status(), CircuitState::Closed);
/// # Ok::<(), resilient_circuit::ConfigError>(())
/// ```
///
/// ```compile_fail
/// use resilient_circuit::{
///     BreakerConfig, CircuitProtector, breaker::Leased, store::CriticalSectionStore, time::Instant,
/// };
/// // No probe lease: a probe slot a dropped call held would never come back.
/// static SENSOR: Leased<CircuitProtector<CriticalSectionStore<8>, Instant>> = Leased::validated(
///     CircuitProtector::new(BreakerConfig::new().validated(), CriticalSectionStore::new(), Instant::ZERO),
/// );
/// ```
#[derive(Clone, Debug)]
pub struct Leased<B> {
    breaker: B,
}

impl<St: StateStore, C: Clock, K, H: TransitionHook, V> Leased<CircuitProtector<St, C, K, H, V>> {
    /// `breaker`, whose configuration must have a
    /// [`probe_lease`](crate::BreakerConfig::probe_lease) that its store applies
    /// ([`StateStore::APPLIES_PROBE_LEASE`]): [`ConfigError::NoProbeLease`] otherwise.
    ///
    /// ```
    /// use resilient_circuit::{BreakerConfig, CircuitProtector, ConfigError, breaker::Leased, store::InlineStore, time::Instant};
    ///
    /// let unleased = CircuitProtector::new(BreakerConfig::new().validate().unwrap(), InlineStore::<8>::new(), Instant::ZERO);
    /// assert_eq!(Leased::new(unleased).unwrap_err(), ConfigError::NoProbeLease);
    /// ```
    pub fn new(breaker: CircuitProtector<St, C, K, H, V>) -> Result<Self, ConfigError> {
        if Self::lends_probes(&breaker) {
            Ok(Leased { breaker })
        } else {
            Err(ConfigError::NoProbeLease)
        }
    }

    /// [`new`](Self::new), checked at compile time in a `static` or a `const` (without a lease
    /// it does not build there; at run time it panics, so prefer `new` there).
    pub const fn validated(breaker: CircuitProtector<St, C, K, H, V>) -> Self {
        if !Self::lends_probes(&breaker) {
            panic!("{}", ConfigError::NoProbeLease.message());
        }
        Leased { breaker }
    }

    /// Whether `breaker`'s probe slots come back by a lease: its configuration has one, and its
    /// store applies it.
    const fn lends_probes(breaker: &CircuitProtector<St, C, K, H, V>) -> bool {
        breaker.config().probe_lease.is_some() && St::APPLIES_PROBE_LEASE
    }
}

impl<B> Leased<B> {
    /// The breaker itself: as a stage by reference (`&breaker`), it gives a dropped call's probe
    /// slot back at once (its configuration still lends slots for the lease).
    pub fn into_inner(self) -> B {
        self.breaker
    }
}

impl<B> Deref for Leased<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.breaker
    }
}

impl<T, E, B: Breaker> Stage<T, E> for &Leased<B>
where
    B::Classifier: Classify<E>,
    B::ValueClassifier: ClassifyValue<T>,
{
    type Ticket = Admission;

    #[inline]
    fn enter(&mut self) -> Result<Admission, Error<E>> {
        Ok(self.breaker.admit()?)
    }

    #[inline]
    fn leave(&mut self, admission: &mut Admission, result: &mut Result<T, Error<E>>) -> Leave {
        let breaker = &self.breaker;
        let verdict =
            classify::verdict_of_composed(breaker.classifier(), breaker.value_classifier(), result);
        breaker.record(*admission, verdict);
        Leave::Return
    }
}

breaker_stage_rest!(&Leased<B>, Breaker);
