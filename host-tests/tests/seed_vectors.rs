//! The Python package's test vectors (reference §8: B*, R*, E*, S*) as one table.
//!
//! Each row states the seed's expected result, or, where SEMANTICS differs, ours and the
//! reason (`differs`). Rows about the seed's storage encoding or its refresh interval that
//! have no counterpart in a typed, atomically shared state say so, and still run what they can.

use std::{
    cell::{Cell, RefCell},
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

use CircuitState::{Closed as C, HalfOpen as H, Open as O};
use host_tests::{FakeClock, FakeSleep, Transitions, secs};
use resilient_circuit::{
    Breaker, BreakerConfig, CircuitProtector, CircuitState, Error, Policy, Ratio, RatioError,
    RejectReason, Rejected, RetryWithBackoff, SafetyNet, ShouldHandle,
    backoff::{ExponentialDelay, FixedDelay},
    classify::Verdict,
    fixed_point::{U1F31, U32F32},
    state::{Outcome, OutcomeWindow},
    store::{InlineStore, StateStore},
};

type SeedBreaker<'a> = CircuitProtector<
    &'a InlineStore<64>,
    &'a FakeClock,
    ShouldHandle<fn(&Fault) -> bool>,
    Box<dyn Fn(CircuitState, CircuitState) + 'a>,
>;

/// A breaker on a fake clock with a recorded hook, driven in the table's notation.
struct Run<'a> {
    clock: &'a FakeClock,
    transitions: &'a Transitions,
    breaker: SeedBreaker<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Handled,
    Declined,
}

#[derive(Debug, PartialEq)]
enum Res {
    Ok,
    Raised,
    Rej,
}

fn handled(f: &Fault) -> bool {
    *f == Fault::Handled
}

impl<'a> Run<'a> {
    fn new(
        config: BreakerConfig,
        store: &'a InlineStore<64>,
        clock: &'a FakeClock,
        transitions: &'a Transitions,
    ) -> Self {
        let hook: Box<dyn Fn(CircuitState, CircuitState) + 'a> = Box::new(transitions.hook());
        let breaker = CircuitProtector::new(config.validate().unwrap(), store, clock)
            .should_handle(ShouldHandle(handled as fn(&Fault) -> bool))
            .on_status_change(hook);
        Run {
            clock,
            transitions,
            breaker,
        }
    }

    /// At time `t` (seconds), a call that succeeds (`'S'`), fails (`'F'`), or raises an error
    /// the classifier declines (`'D'`).
    fn at(&self, t: f64, call: char) -> Res {
        self.clock.set_secs(t);
        let result = self.breaker.call(|| match call {
            'S' => Ok(()),
            'F' => Err(Fault::Handled),
            'D' => Err(Fault::Declined),
            _ => unreachable!(),
        });
        match result {
            Ok(()) => Res::Ok,
            Err(Error::Rejected(_)) => Res::Rej,
            Err(_) => Res::Raised,
        }
    }

    /// State, window (T = success, F = failure, oldest first) and failure count.
    fn is(&self, state: CircuitState, log: &str, failure_count: u32) {
        let window: String = self
            .breaker
            .execution_log()
            .iter()
            .map(|o| if o == Outcome::Success { 'T' } else { 'F' })
            .collect();
        assert_eq!(
            (
                self.breaker.status(),
                window.as_str(),
                self.breaker.failure_count()
            ),
            (state, log, failure_count)
        );
    }

    fn hooks(&self) -> Vec<(CircuitState, CircuitState)> {
        self.transitions.take()
    }
}

fn config(fl: (u16, u16), sl: Option<(u16, u16)>, cooldown: f64) -> BreakerConfig {
    let c = BreakerConfig::new()
        .failure_limit(Ratio::new(fl.0, fl.1).unwrap())
        .cooldown(secs(cooldown));
    match sl {
        Some((a, b)) => c.success_limit(Ratio::new(a, b).unwrap()),
        None => c,
    }
}

/// Runs `body` with a fresh breaker.
fn with(config: BreakerConfig, body: impl FnOnce(&Run<'_>)) {
    let (store, clock, transitions) = (
        InlineStore::<64>::new(),
        FakeClock::new(),
        Transitions::new(),
    );
    body(&Run::new(config, &store, &clock, &transitions));
}

struct Vector {
    id: &'static str,
    /// `None`: the seed's result. `Some(why)`: ours differs, and why.
    differs: Option<&'static str>,
    check: fn(),
}

const VECTORS: &[Vector] = &[
    Vector {
        id: "B1",
        differs: None,
        check: || {
            with(config((1, 1), None, 0.0), |r| {
                assert_eq!(r.at(0.0, 'F'), Res::Raised);
                r.is(O, "F", 1);
                assert_eq!(r.hooks(), [(C, O)]);
                assert_eq!(r.at(0.0, 'S'), Res::Ok);
                r.is(C, "", 0);
                assert_eq!(r.hooks(), [(O, H), (H, C)]);
            })
        },
    },
    Vector {
        id: "B2",
        differs: None,
        check: || {
            with(config((1, 1), None, 0.0), |r| {
                r.at(0.0, 'F');
                r.hooks();
                assert_eq!(r.at(0.0, 'F'), Res::Raised);
                r.is(O, "F", 1);
                assert_eq!(r.hooks(), [(O, H), (H, O)]);
            })
        },
    },
    Vector {
        id: "B3",
        differs: None,
        check: || {
            with(config((3, 5), None, 10.0), |r| {
                r.at(0.0, 'F');
                r.at(1.0, 'F');
                r.at(2.0, 'F');
                r.is(C, "FFF", 3);
                r.at(3.0, 'S');
                r.at(4.0, 'S');
                r.is(C, "FFFTT", 0);
                r.at(5.0, 'F');
                r.is(O, "FFTTF", 1);
                assert_eq!(r.at(6.0, 'S'), Res::Rej);
            })
        },
    },
    Vector {
        id: "B4",
        differs: Some(
            "2/4 is a window of 4 with threshold 2 (the seed reduces it to 1/2 and trips at the 2nd outcome)",
        ),
        check: || {
            with(config((2, 4), None, 10.0), |r| {
                r.at(0.0, 'S');
                r.at(1.0, 'F');
                r.is(C, "TF", 1);
                assert_eq!(r.at(2.0, 'S'), Res::Ok);
                r.at(3.0, 'F');
                r.is(O, "TFTF", 1);
            })
        },
    },
    Vector {
        id: "B5",
        differs: Some("5/10 is a window of 10 (the seed's 1/2 trips after 2 failures)"),
        check: || {
            with(config((5, 10), None, 10.0), |r| {
                r.at(0.0, 'F');
                r.at(1.0, 'F');
                r.is(C, "FF", 2);
                for t in 2..9 {
                    r.at(t as f64, if t < 7 { 'S' } else { 'F' });
                }
                r.is(C, "FFTTTTTFF", 2);
                r.at(9.0, 'F');
                r.is(O, "FFTTTTTFFF", 3);
            })
        },
    },
    Vector {
        id: "B6",
        differs: None,
        check: || {
            with(config((2, 3), None, 10.0), |r| {
                r.at(0.0, 'F');
                r.at(1.0, 'F');
                r.at(2.0, 'S');
                r.is(C, "FFT", 0);
                r.at(3.0, 'F');
                r.is(O, "FTF", 1);
            })
        },
    },
    Vector {
        id: "B7",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.at(0.0, 'F');
                assert_eq!(r.at(5.0, 'S'), Res::Rej);
                assert_eq!(r.at(9.999, 'S'), Res::Rej);
                assert_eq!(r.at(10.0, 'S'), Res::Ok);
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B8",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.at(0.0, 'F');
                assert_eq!(r.at(10.0, 'F'), Res::Raised);
                assert_eq!(
                    r.breaker.state().open_until(),
                    Some(resilient_circuit::time::Instant::from_secs(20))
                );
                assert_eq!(r.at(15.0, 'S'), Res::Rej);
                assert_eq!(r.at(20.0, 'S'), Res::Ok);
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B9",
        differs: Some(
            "success_limit 5/5 needs 5 successes (the seed reduces it to 1/1 and closes after one)",
        ),
        check: || {
            with(config((1, 1), Some((5, 5)), 10.0), |r| {
                r.at(0.0, 'F');
                r.at(10.0, 'S');
                r.is(H, "T", 0);
                for t in 11..15 {
                    r.at(t as f64, 'S');
                }
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B10",
        differs: None,
        check: || {
            with(config((1, 1), Some((3, 4)), 10.0), |r| {
                r.at(0.0, 'F');
                r.at(10.0, 'S');
                r.is(H, "T", 0);
                r.at(11.0, 'F');
                r.is(H, "TF", 1);
                r.at(12.0, 'S');
                r.is(H, "TFT", 0);
                r.at(13.0, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B11",
        differs: Some(
            "reopens at 12, as soon as 3 of 4 is out of reach (the seed waits for a 4th probe at 13; same verdict)",
        ),
        check: || {
            with(config((1, 1), Some((3, 4)), 10.0), |r| {
                r.at(0.0, 'F');
                r.at(10.0, 'S');
                r.at(11.0, 'F');
                assert_eq!(r.at(12.0, 'F'), Res::Raised);
                r.is(O, "TFF", 2);
                assert_eq!(r.at(13.0, 'S'), Res::Rej);
                assert_eq!(r.at(14.0, 'S'), Res::Rej);
            })
        },
    },
    Vector {
        id: "B12",
        differs: Some(
            "reopens at 16, once the 2nd failure reaches the limit (the seed waits for the full window at 18; same verdict)",
        ),
        check: || {
            with(config((2, 5), None, 10.0), |r| {
                for t in 0..5 {
                    r.at(t as f64, 'F');
                }
                r.is(O, "FFFFF", 5);
                assert_eq!(
                    r.breaker.state().open_until(),
                    Some(resilient_circuit::time::Instant::from_secs(14))
                );
                r.at(14.0, 'F');
                r.is(H, "F", 1);
                r.at(15.0, 'S');
                assert_eq!(r.at(16.0, 'F'), Res::Raised);
                r.is(O, "FTF", 1);
                assert_eq!(r.at(17.0, 'S'), Res::Rej);
                assert_eq!(r.at(19.0, 'S'), Res::Rej);
            })
        },
    },
    Vector {
        id: "B13",
        differs: None,
        check: || {
            with(config((2, 5), None, 10.0), |r| {
                for t in 0..5 {
                    r.at(t as f64, 'F');
                }
                for (t, call) in [(14.0, 'S'), (15.0, 'F'), (16.0, 'S'), (17.0, 'S')] {
                    r.at(t, call);
                    assert_eq!(r.breaker.status(), H);
                }
                r.at(18.0, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B14",
        differs: Some(
            "closes after 2 successes, when 2 failures of 3 are out of reach (the seed needs 3)",
        ),
        check: || {
            with(config((2, 3), None, 0.2), |r| {
                r.at(0.0, 'F');
                r.at(0.0, 'F');
                r.at(0.0, 'F');
                assert_eq!(r.at(0.0, 'F'), Res::Rej);
                r.is(O, "FFF", 3);
                r.at(0.3, 'S');
                r.is(H, "T", 0);
                r.at(0.3, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B15",
        differs: None,
        check: || {
            with(config((2, 3), Some((1, 1)), 0.2), |r| {
                for _ in 0..3 {
                    r.at(0.0, 'F');
                }
                r.at(0.3, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B16",
        differs: Some(
            "closes at the first success: 1 of 3 is certain (the seed waits for the full window of 3)",
        ),
        check: || {
            with(config((2, 3), Some((1, 3)), 0.2), |r| {
                for _ in 0..3 {
                    r.at(0.0, 'F');
                }
                r.at(0.3, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B17",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                assert_eq!(r.at(0.0, 'D'), Res::Raised);
                r.is(C, "T", 0);
                r.at(2.0, 'F');
                r.is(O, "F", 1);
            })
        },
    },
    Vector {
        id: "B18",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.at(0.0, 'F');
                assert_eq!(r.at(10.0, 'D'), Res::Raised);
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B19",
        differs: Some("3/2 is a construction error, not a breaker that never trips"),
        check: || {
            assert_eq!(
                Ratio::new(3, 2),
                Err(RatioError::NumeratorAboveDenominator {
                    numerator: 3,
                    denominator: 2
                })
            );
        },
    },
    Vector {
        id: "B20",
        differs: Some("0/7 is a window of 7 (the seed's 0/1 trips at the first failure)"),
        check: || {
            with(config((0, 7), None, 10.0), |r| {
                r.at(0.0, 'S');
                r.at(1.0, 'F');
                r.is(C, "TF", 1);
                for t in 2..7 {
                    r.at(t as f64, 'S');
                }
                r.is(C, "TFTTTTT", 0);
                r.at(7.0, 'F');
                r.is(O, "FTTTTTF", 1);
            })
        },
    },
    Vector {
        id: "B21",
        differs: None,
        check: || {
            with(config((2, 3), None, 10.0), |r| {
                r.at(0.0, 'F');
                r.is(C, "F", 1);
                r.at(1.0, 'S');
                r.is(C, "FT", 0);
                r.at(2.0, 'F');
                r.is(O, "FTF", 1);
            })
        },
    },
    Vector {
        id: "B22",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.at(0.0, 'F');
                r.clock.set_secs(10.0);
                let unwound = catch_unwind(AssertUnwindSafe(|| {
                    let _ = r
                        .breaker
                        .call(|| -> Result<(), Fault> { panic!("SystemExit") });
                }));
                assert!(unwound.is_err());
                r.is(H, "", 0);
                r.at(10.0, 'S');
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B23",
        differs: None,
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.breaker.force_open().unwrap();
                r.clock.set_secs(100.0);
                assert_eq!(r.breaker.status(), O);
            })
        },
    },
    Vector {
        id: "B24",
        differs: Some(
            "the hook fires for real transitions only: no (CLOSED, CLOSED) or (OPEN, OPEN)",
        ),
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                r.breaker.force_closed().unwrap();
                r.breaker.force_open().unwrap();
                r.breaker.force_open().unwrap();
                assert_eq!(r.hooks(), [(C, O)]);
            })
        },
    },
    Vector {
        id: "B25",
        differs: Some(
            "HALF_OPEN admits 3 probes for a window of 3 and rejects the other 3 briefly (the seed admits all 6)",
        ),
        check: || {
            with(config((1, 1), Some((2, 3)), 0.1), |r| {
                r.at(0.0, 'F');
                r.clock.set_secs(0.2);
                let admitted: Vec<_> = (0..6)
                    .filter_map(|_| r.breaker.try_acquire().ok())
                    .collect();
                assert_eq!(admitted.len(), 3);
                for permit in admitted {
                    permit.record(Verdict::Success);
                }
                r.is(C, "", 0);
            })
        },
    },
    Vector {
        id: "B26",
        differs: Some(
            "no duck-typed results: a call that returns a value but failed reports it through a Permit",
        ),
        check: || {
            with(config((1, 1), None, 10.0), |r| {
                let permit = r.breaker.try_acquire().unwrap();
                let value = ("success=False", None::<()>);
                permit.record(Verdict::Failure);
                assert_eq!(value.0, "success=False");
                r.is(O, "F", 1);
            })
        },
    },
    Vector {
        id: "B27",
        differs: Some(
            "breakers on one store see a peer's OPEN at once: no 1 s refresh window in which a stale breaker still runs calls",
        ),
        check: || {
            shared(|a, b, clock| {
                assert_eq!(b.at(0.0, 'S'), Res::Ok);
                a.at(0.1, 'F');
                clock.set_secs(0.5);
                assert_eq!(b.at(0.5, 'S'), Res::Rej);
            })
        },
    },
    Vector {
        id: "B28",
        differs: Some(
            "same admissions; a breaker's hook reports the transitions it makes, not a peer's",
        ),
        check: || {
            shared(|a, b, _| {
                a.at(0.0, 'F');
                assert_eq!(b.at(0.0, 'S'), Res::Rej);
                assert_eq!(a.at(10.0, 'S'), Res::Ok);
                assert_eq!(a.breaker.status(), C);
                assert_eq!(b.at(10.5, 'S'), Res::Ok);
                assert_eq!(b.hooks(), []);
            })
        },
    },
    Vector {
        id: "B29",
        differs: Some(
            "same admission and stored CLOSED; hooks report O->H, H->C only (no adoption C->O)",
        ),
        check: || {
            shared(|a, b, clock| {
                a.breaker.force_open().unwrap(); // OPEN until 10 s on the shared store
                clock.set_secs(10.0);
                assert_eq!(b.at(10.0, 'S'), Res::Ok);
                assert_eq!(a.breaker.status(), C);
                assert_eq!(b.hooks(), [(O, H), (H, C)]);
            })
        },
    },
    Vector {
        id: "B30",
        differs: Some(
            "an OPEN state cannot exist without its deadline, so it cannot wedge; shown: force_open always sets one",
        ),
        check: || {
            with(config((1, 1), None, 1.5), |r| {
                r.breaker.force_open().unwrap();
                assert!(r.breaker.state().open_until().is_some());
                assert_eq!(r.at(1.5, 'S'), Res::Ok);
            })
        },
    },
    Vector {
        id: "B31",
        differs: Some(
            "the core's state is a typed enum: no unknown state string can be stored; reading rows is the PostgreSQL store's job",
        ),
        check: || {
            let store = InlineStore::<64>::new();
            assert_eq!(store.update(|s| s.status()), C);
        },
    },
    Vector {
        id: "R1",
        differs: Some("no wait after the last attempt: waits [1, 1], not [1, 1, 1]"),
        check: || {
            let clock = FakeClock::new();
            let sleep = FakeSleep::new(&clock);
            let runs = Cell::new(0);
            let result: Result<(), _> = RetryWithBackoff::new(2)
                .with_backoff(FixedDelay(secs(1.0)), &sleep)
                .call(|| {
                    runs.set(runs.get() + 1);
                    Err(runs.get())
                });
            assert_eq!((runs.get(), sleep.waits()), (3, vec![secs(1.0), secs(1.0)]));
            assert_eq!(
                result,
                Err(Error::RetryLimitReached {
                    attempts: 3,
                    last_error: 3
                })
            );
        },
    },
    Vector {
        id: "R2",
        differs: Some("no wait after the last attempt: waits [0.1, 0.2, 0.4, 0.8]"),
        check: || {
            let clock = FakeClock::new();
            let sleep = FakeSleep::new(&clock);
            let runs = Cell::new(0);
            let _: Result<(), _> = RetryWithBackoff::new(4)
                .with_backoff(ExponentialDelay::new(secs(0.1), secs(1.0)).unwrap(), &sleep)
                .call(|| {
                    runs.set(runs.get() + 1);
                    Err("F")
                });
            assert_eq!(
                (runs.get(), sleep.waits()),
                (5, [0.1, 0.2, 0.4, 0.8].map(secs).to_vec())
            );
        },
    },
    Vector {
        id: "R3",
        differs: None,
        check: || {
            let clock = FakeClock::new();
            let sleep = FakeSleep::new(&clock);
            let runs = Cell::new(0);
            let result = RetryWithBackoff::new(3)
                .with_backoff(ExponentialDelay::new(secs(0.1), secs(1.0)).unwrap(), &sleep)
                .call(|| {
                    runs.set(runs.get() + 1);
                    if runs.get() < 3 { Err("F") } else { Ok("S") }
                });
            assert_eq!(
                (result, runs.get(), sleep.waits()),
                (Ok("S"), 3, vec![secs(0.1), secs(0.2)])
            );
        },
    },
    Vector {
        id: "R4",
        differs: Some("no wait after the last attempt: one call, no wait"),
        check: || {
            let clock = FakeClock::new();
            let sleep = FakeSleep::new(&clock);
            let result: Result<(), _> = RetryWithBackoff::new(0)
                .with_backoff(FixedDelay(secs(2.0)), &sleep)
                .call(|| Err("F"));
            assert_eq!(
                (result, sleep.waits()),
                (
                    Err(Error::RetryLimitReached {
                        attempts: 1,
                        last_error: "F"
                    }),
                    vec![]
                )
            );
        },
    },
    Vector {
        id: "R5",
        differs: Some(
            "max_retries is a u32: a negative count does not compile; 0 still runs the call once",
        ),
        check: || {
            let runs = Cell::new(0);
            let _: Result<(), _> = RetryWithBackoff::new(0).call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert_eq!(runs.get(), 1);
        },
    },
    Vector {
        id: "R6",
        differs: None,
        check: || {
            #[derive(Debug, PartialEq)]
            enum E {
                Connection,
                Key,
            }
            let clock = FakeClock::new();
            let sleep = FakeSleep::new(&clock);
            let runs = Cell::new(0);
            let result: Result<(), _> = RetryWithBackoff::new(3)
                .with_backoff(FixedDelay(secs(1.0)), &sleep)
                .should_handle(ShouldHandle(|e: &E| *e == E::Connection))
                .call(|| {
                    runs.set(runs.get() + 1);
                    Err(if runs.get() == 1 {
                        E::Connection
                    } else {
                        E::Key
                    })
                });
            assert_eq!(
                (result, runs.get(), sleep.waits()),
                (Err(Error::Operation(E::Key)), 2, vec![secs(1.0)])
            );
        },
    },
    Vector {
        id: "R7",
        differs: None,
        check: || {
            let runs = Cell::new(0);
            let _: Result<(), _> = RetryWithBackoff::default().call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert_eq!(runs.get(), 4);
        },
    },
    Vector {
        id: "E1",
        differs: None,
        check: || {
            let mut e = ExponentialDelay::new(Duration::from_millis(50), secs(100.0)).unwrap();
            let got: Vec<f64> = (1..=11)
                .map(|k| resilient_circuit::backoff::Backoff::delay(&mut e, k).as_secs_f64())
                .collect();
            assert_eq!(
                got,
                [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2]
            );
        },
    },
    Vector {
        id: "E2",
        differs: None,
        check: || {
            let mut e = ExponentialDelay::new(secs(1.0), secs(10.0))
                .unwrap()
                .with_factor(U32F32::from_num(3))
                .unwrap();
            let got: Vec<f64> = (1..=5)
                .map(|k| resilient_circuit::backoff::Backoff::delay(&mut e, k).as_secs_f64())
                .collect();
            assert_eq!(got, [1.0, 3.0, 9.0, 10.0, 10.0]);
            let mut two = ExponentialDelay::new(secs(1.0), secs(10.0)).unwrap();
            assert_eq!(
                resilient_circuit::backoff::Backoff::delay(&mut two, 1_000_000),
                secs(10.0)
            );
        },
    },
    Vector {
        id: "E3",
        differs: None,
        check: || {
            let mut e = ExponentialDelay::new(secs(1.0), secs(100.0))
                .unwrap()
                .with_jitter(U1F31::from_num(0.5), host_tests::SplitMix64::new(3))
                .unwrap();
            for _ in 0..1_000 {
                let d = resilient_circuit::backoff::Backoff::delay(&mut e, 3);
                assert!(d >= secs(2.0) && d <= secs(6.0));
            }
            let at_min = (0..1_000)
                .filter(|_| resilient_circuit::backoff::Backoff::delay(&mut e, 1) == secs(1.0))
                .count();
            assert!(
                (400..600).contains(&at_min),
                "about half exactly at min: {at_min}"
            );
        },
    },
    Vector {
        id: "S1",
        differs: Some(
            "the retry stops at the open breaker and returns Rejected { retry_after: 30 s } (the seed raises RetryLimitReached)",
        ),
        check: || {
            let clock = FakeClock::new();
            let b = CircuitProtector::new(
                config((1, 1), None, 30.0)
                    .validate::<OutcomeWindow<64>>()
                    .unwrap(),
                InlineStore::<64>::new(),
                &clock,
            );
            let runs = Cell::new(0);
            let result: Result<(), _> = SafetyNet::new((RetryWithBackoff::new(3), &b)).call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert_eq!(
                (runs.get(), result, b.status()),
                (
                    1,
                    Err(Error::Rejected(Rejected::new(
                        secs(30.0),
                        RejectReason::Open
                    ))),
                    O
                )
            );
        },
    },
    Vector {
        id: "S2",
        differs: None,
        check: || {
            let clock = FakeClock::new();
            let b = CircuitProtector::new(
                config((1, 2), None, 30.0)
                    .validate::<OutcomeWindow<64>>()
                    .unwrap(),
                InlineStore::<64>::new(),
                &clock,
            );
            let runs = Cell::new(0);
            let mut net = SafetyNet::new((&b, RetryWithBackoff::new(2)));
            let _: Result<(), _> = net.call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert_eq!((runs.get(), b.status(), b.execution_log().len()), (3, C, 1));
            let _: Result<(), _> = net.call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert_eq!((runs.get(), b.status()), (6, O));
            let third: Result<(), _> = net.call(|| {
                runs.set(runs.get() + 1);
                Err("F")
            });
            assert!(matches!(third, Err(Error::Rejected(_))));
            assert_eq!(runs.get(), 6);
        },
    },
];

/// Two breakers, both cooldown 10 s, sharing one store.
fn shared(body: impl FnOnce(&Run<'_>, &Run<'_>, &FakeClock)) {
    let (store, clock) = (InlineStore::<64>::new(), FakeClock::new());
    let (ta, tb) = (Transitions::new(), Transitions::new());
    let a = Run::new(config((1, 1), None, 10.0), &store, &clock, &ta);
    let b = Run::new(config((1, 1), None, 10.0), &store, &clock, &tb);
    body(&a, &b, &clock);
}

#[test]
fn seed_test_vectors() {
    let failures = RefCell::new(Vec::new());
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for vector in VECTORS {
        if let Err(panic) = catch_unwind(vector.check) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.borrow_mut().push(format!(
                "{} ({}): {message}",
                vector.id,
                vector.differs.unwrap_or("as the seed")
            ));
        }
    }
    std::panic::set_hook(previous_hook);
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "vectors failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn seed_test_vectors_cover_every_b_r_e_s_vector() {
    let mut expected: Vec<String> = (1..=31).map(|i| format!("B{i}")).collect();
    expected.extend((1..=7).map(|i| format!("R{i}")));
    expected.extend((1..=3).map(|i| format!("E{i}")));
    expected.extend((1..=2).map(|i| format!("S{i}")));
    let ids: Vec<String> = VECTORS.iter().map(|v| v.id.to_string()).collect();
    assert_eq!(ids, expected);
    let differing = VECTORS.iter().filter(|v| v.differs.is_some()).count();
    assert_eq!(
        differing, 22,
        "a row changed between 'as the seed' and 'differs'"
    );
}
