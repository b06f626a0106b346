//! Breaker configuration and its validation against a window capacity.

use core::{fmt, marker::PhantomData, time::Duration};

use super::ratio::Ratio;
use crate::state::Window;

/// How a circuit protector decides. Plain data, `Copy`, buildable in `const` items: build it
/// with the methods, read it through the fields.
///
/// Defaults equal the Python package's: `failure_limit` 1/1, no `success_limit` (HALF_OPEN
/// decides by `failure_limit`), `cooldown` 0. A configuration is checked against the window
/// capacity by [`BreakerConfig::validate`], which yields the [`ValidConfig`] a breaker needs.
///
/// ```
/// use core::time::Duration;
/// use resilient_circuit::{BreakerConfig, ConfigError, Ratio, state::OutcomeWindow};
///
/// let config = BreakerConfig::new()
///     .failure_limit(Ratio::of::<3, 5>())
///     .success_limit(Ratio::of::<2, 2>())
///     .cooldown(Duration::from_secs(30));
/// assert_eq!(config.cooldown, Duration::from_secs(30));
/// assert!(config.validate::<OutcomeWindow<64>>().is_ok());
///
/// // A window of 100 outcomes does not fit a 64-outcome capacity.
/// let too_big = BreakerConfig::new().failure_limit(Ratio::of::<50, 100>());
/// assert_eq!(
///     too_big.validate::<OutcomeWindow<64>>(),
///     Err(ConfigError::WindowAboveCapacity { window: 100, capacity: 64 })
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Trip once the CLOSED window of the last `failure_limit.denominator()` outcomes is full
    /// and holds at least `failure_limit.numerator()` failures.
    pub failure_limit: Ratio,
    /// In HALF_OPEN, close once `numerator()` of `denominator()` probes succeeded; `None`:
    /// HALF_OPEN decides by `failure_limit`.
    pub success_limit: Option<Ratio>,
    /// How long OPEN rejects calls before letting probes through.
    pub cooldown: Duration,
    /// The `retry_after` of a call rejected in HALF_OPEN because all probe slots are taken.
    pub busy_retry_after: Duration,
    /// How long a HALF_OPEN probe slot is lent: `None` (the default), until its call reports
    /// or gives it back. See [`BreakerConfig::probe_lease`].
    pub probe_lease: Option<Duration>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BreakerConfig {
    /// The default `retry_after` of a call rejected because every HALF_OPEN probe slot is taken.
    pub const DEFAULT_BUSY_RETRY_AFTER: Duration = Duration::from_millis(100);

    /// The defaults: failure limit 1/1, no success limit, no cooldown.
    pub const fn new() -> Self {
        BreakerConfig {
            failure_limit: match Ratio::new(1, 1) {
                Ok(r) => r,
                Err(_) => unreachable!(),
            },
            success_limit: None,
            cooldown: Duration::ZERO,
            busy_retry_after: Self::DEFAULT_BUSY_RETRY_AFTER,
            probe_lease: None,
        }
    }

    /// Trip once the CLOSED window of the last `limit.denominator()` outcomes is full and holds
    /// at least `limit.numerator()` failures.
    pub const fn failure_limit(mut self, limit: Ratio) -> Self {
        self.failure_limit = limit;
        self
    }

    /// In HALF_OPEN, close once `limit.numerator()` of `limit.denominator()` probes succeeded,
    /// reopen once that can no longer happen.
    pub const fn success_limit(mut self, limit: Ratio) -> Self {
        self.success_limit = Some(limit);
        self
    }

    /// How long OPEN rejects calls before letting probes through.
    pub const fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The `retry_after` given to a call rejected in HALF_OPEN because all probe slots are
    /// taken (default [`Self::DEFAULT_BUSY_RETRY_AFTER`]).
    pub const fn busy_retry_after(mut self, retry_after: Duration) -> Self {
        self.busy_retry_after = retry_after;
        self
    }

    /// Lend HALF_OPEN probe slots for at least `lease`: once every slot is taken, the first
    /// call refused starts the lease, and when it has ended with no probe admitted meanwhile,
    /// the probes still out are taken for lost. The HALF_OPEN period then starts over, the call
    /// asking its first probe (the lost probes' outcomes, should they come, change nothing). A
    /// probe that hangs, or whose call was dropped without giving its slot back, then blocks
    /// the breaker for about `lease`, not for ever, and a [`Leased`](crate::breaker::Leased)
    /// breaker needs no code to give slots back. Make it longer than a probe takes.
    ///
    /// The in-process stores of this crate apply it; the keyed stores of
    /// `resilient-circuit-std` refuse it (they give slots back themselves, and the PostgreSQL
    /// store leases them in its row).
    ///
    /// ```
    /// use core::time::Duration;
    /// use resilient_circuit::{
    ///     BreakerConfig, CircuitState, classify::Verdict, state::{BreakerState, OutcomeWindow},
    ///     time::Instant,
    /// };
    ///
    /// let config = BreakerConfig::new().probe_lease(Duration::from_secs(1));
    /// let mut state = BreakerState::<OutcomeWindow<8>>::new();
    /// let (admission, _) = state.admit(&config, &Instant::ZERO).unwrap();
    /// state.record(&config, admission, Verdict::Failure, &Instant::ZERO); // OPEN
    /// let (lost, _) = state.admit(&config, &Instant::ZERO).unwrap(); // the probe, never back
    /// assert!(state.admit(&config, &Instant::from_secs(5)).is_err()); // the lease starts
    /// assert!(state.admit(&config, &Instant::from_millis(5_999)).is_err());
    /// let (probe, _) = state.admit(&config, &Instant::from_secs(6)).unwrap(); // it ended
    /// state.record(&config, probe, Verdict::Success, &Instant::from_secs(6));
    /// assert_eq!(state.status(), CircuitState::Closed);
    /// assert_ne!(lost.epoch(), probe.epoch()); // the lost probe's outcome would be ignored
    /// ```
    pub const fn probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = Some(lease);
        self
    }

    /// Size of the CLOSED window.
    pub const fn closed_window(&self) -> u16 {
        self.failure_limit.denominator()
    }

    /// Size of the HALF_OPEN window, which is also the number of probes a HALF_OPEN period admits.
    pub const fn probe_window(&self) -> u16 {
        match self.success_limit {
            Some(limit) => limit.denominator(),
            None => self.failure_limit.denominator(),
        }
    }

    /// Checks both windows fit `Win`'s capacity, and that a probe lease is not zero.
    pub const fn validate<Win: Window>(self) -> Result<ValidConfig<Win>, ConfigError> {
        let capacity = Win::CAPACITY;
        if self.failure_limit.denominator() > capacity {
            return Err(ConfigError::WindowAboveCapacity {
                window: self.failure_limit.denominator(),
                capacity,
            });
        }
        if let Some(limit) = self.success_limit
            && limit.denominator() > capacity
        {
            return Err(ConfigError::WindowAboveCapacity {
                window: limit.denominator(),
                capacity,
            });
        }
        if let Some(lease) = self.probe_lease
            && lease.is_zero()
        {
            return Err(ConfigError::ZeroProbeLease);
        }
        Ok(ValidConfig {
            config: self,
            window: PhantomData,
        })
    }

    /// [`validate`](Self::validate), checked at compile time in a `const` item (an invalid
    /// configuration does not compile there). At run time prefer `validate`, which returns the
    /// error as a value. The crate's other const-checked forms (`validated`,
    /// `with_factor_validated`) work the same way.
    ///
    /// ```
    /// use resilient_circuit::{BreakerConfig, Ratio, ValidConfig, state::OutcomeWindow};
    /// const CONFIG: ValidConfig<OutcomeWindow<8>> =
    ///     BreakerConfig::new().failure_limit(Ratio::of::<2, 4>()).validated();
    /// ```
    ///
    /// ```compile_fail
    /// use resilient_circuit::{BreakerConfig, Ratio, ValidConfig, state::OutcomeWindow};
    /// // A window of 16 in a capacity of 8: does not compile.
    /// const CONFIG: ValidConfig<OutcomeWindow<8>> =
    ///     BreakerConfig::new().failure_limit(Ratio::of::<2, 16>()).validated();
    /// ```
    pub const fn validated<Win: Window>(self) -> ValidConfig<Win> {
        match self.validate() {
            Ok(valid) => valid,
            Err(error) => panic!("{}", error.message()),
        }
    }
}

/// A [`BreakerConfig`] whose windows fit the capacity of `Win`.
#[derive(Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ValidConfig<Win> {
    config: BreakerConfig,
    window: PhantomData<Win>,
}

impl<Win> Clone for ValidConfig<Win> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Win> Copy for ValidConfig<Win> {}

impl<Win> ValidConfig<Win> {
    /// The configuration.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }
}

/// Why a [`BreakerConfig`] does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit's window is larger than the outcome window's capacity.
    WindowAboveCapacity {
        /// The window the limit asks for.
        window: u16,
        /// What the breaker's outcome window holds.
        capacity: u16,
    },
    /// A [`Leased`](crate::breaker::Leased) breaker needs a
    /// [`probe_lease`](BreakerConfig::probe_lease) that its store applies: without one, a
    /// probe slot its dropped call held would never come back.
    NoProbeLease,
    /// A [`probe_lease`](BreakerConfig::probe_lease) of zero: the probes in flight would be
    /// taken for lost by the second call refused, however soon, and probes would have no bound.
    ZeroProbeLease,
}

impl ConfigError {
    /// A one-line description, usable in `const` panics.
    pub const fn message(&self) -> &'static str {
        match self {
            ConfigError::WindowAboveCapacity { .. } => {
                "a limit's window (its denominator) exceeds the outcome window's capacity"
            }
            ConfigError::NoProbeLease => {
                "a Leased breaker needs a probe_lease in its configuration, applied by its store"
            }
            ConfigError::ZeroProbeLease => "a probe_lease must be longer than zero",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::WindowAboveCapacity { window, capacity } => write!(
                f,
                "a limit's window of {window} outcomes exceeds the outcome window's capacity of {capacity}"
            ),
            ConfigError::NoProbeLease => f.write_str(
                "a Leased breaker needs a probe_lease in its configuration, applied by its store (a keyed store applies its key's own): without one, a probe slot its dropped call held would never come back"
            ),
            ConfigError::ZeroProbeLease => f.write_str(
                "a probe_lease must be longer than zero: with none, probes in flight are taken for lost by the second call refused"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}
