//! "a out of b", never reduced.

use core::fmt;

/// "`a` out of `b`": a threshold of `a` outcomes in a window of the last `b` outcomes.
///
/// Never reduced: `Ratio::new(5, 10)` is a window of 10 outcomes with a threshold of 5 (Python's
/// `Fraction(5, 10)` would become 1/2, a window of 2). Whether `b` fits the breaker's window
/// capacity is checked when the breaker's configuration is validated.
///
/// ```
/// use resilient_circuit::{Ratio, RatioError};
///
/// let r = Ratio::new(5, 10).unwrap();
/// assert_eq!((r.numerator(), r.denominator()), (5, 10));
/// assert_eq!(Ratio::new(1, 0), Err(RatioError::ZeroDenominator));
/// assert_eq!(Ratio::new(3, 2), Err(RatioError::NumeratorAboveDenominator { numerator: 3, denominator: 2 }));
///
/// // With constants, a bad ratio does not compile.
/// const THREE_OF_FIVE: Ratio = Ratio::of::<3, 5>();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ratio {
    numerator: u16,
    denominator: u16,
}

/// Why a [`Ratio`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RatioError {
    /// `b` was 0: a window must hold at least one outcome.
    ZeroDenominator,
    /// `a` was larger than `b`: such a threshold could never be reached.
    NumeratorAboveDenominator {
        /// The `a` given.
        numerator: u16,
        /// The `b` given.
        denominator: u16,
    },
}

impl RatioError {
    /// A one-line description, usable in `const` panics.
    pub const fn message(&self) -> &'static str {
        match self {
            RatioError::ZeroDenominator => "ratio denominator must be at least 1",
            RatioError::NumeratorAboveDenominator { .. } => {
                "ratio numerator must not exceed its denominator"
            }
        }
    }
}

impl fmt::Display for RatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RatioError::ZeroDenominator => f.write_str(self.message()),
            RatioError::NumeratorAboveDenominator {
                numerator,
                denominator,
            } => write!(
                f,
                "ratio numerator must not exceed its denominator (got {numerator}/{denominator})"
            ),
        }
    }
}

impl core::error::Error for RatioError {}

impl Ratio {
    /// `numerator` out of `denominator`, or why not.
    pub const fn new(numerator: u16, denominator: u16) -> Result<Self, RatioError> {
        if denominator == 0 {
            Err(RatioError::ZeroDenominator)
        } else if numerator > denominator {
            Err(RatioError::NumeratorAboveDenominator {
                numerator,
                denominator,
            })
        } else {
            Ok(Ratio {
                numerator,
                denominator,
            })
        }
    }

    /// `A` out of `B`, checked at compile time.
    ///
    /// ```compile_fail
    /// // 3 out of 2: does not compile.
    /// const BAD: resilient_circuit::Ratio = resilient_circuit::Ratio::of::<3, 2>();
    /// let _ = BAD;
    /// ```
    pub const fn of<const A: u16, const B: u16>() -> Self {
        const {
            assert!(B != 0, "ratio denominator must be at least 1");
            assert!(A <= B, "ratio numerator must not exceed its denominator");
        }
        Ratio {
            numerator: A,
            denominator: B,
        }
    }

    /// The threshold `a`.
    pub const fn numerator(self) -> u16 {
        self.numerator
    }

    /// The window size `b`.
    pub const fn denominator(self) -> u16 {
        self.denominator
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}
