//! One key's shared copy as the fleet keeps it: the state on the fleet's timeline, the probe
//! lease, and which batch of each writer is in it, in a small binary form.
//!
//! The bytes come from outside the process: [`FleetCopy::decode`] checks every field and
//! refuses what it cannot read whole.

use resilient_circuit::{
    BreakerConfig, CircuitState,
    state::{BreakerState, Outcome, Window},
    time::Instant,
};

use crate::store::{
    replica::Event,
    window::{MAX_WINDOW, SharedWindow},
};

/// The first bytes of every copy: the format and its version.
const MAGIC: [u8; 4] = *b"RCS1";
/// Writers a copy remembers; past this the one that wrote least recently is forgotten (so at
/// most this many processes should write one key within [`WRITER_MEMORY_NANOS`]).
const MAX_WRITERS: usize = 256;
/// A writer that has not written for this long is forgotten (a batch in doubt for longer
/// could be applied twice).
const WRITER_MEMORY_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// A key's shared copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FleetCopy {
    /// The state, its instants on the fleet's timeline (nanoseconds since the Unix epoch).
    pub(super) state: BreakerState<SharedWindow>,
    /// Until when (fleet timeline) the probe slots taken in HALF_OPEN are leased: a writer that
    /// took one and vanished gives it back by this.
    probes_until: u64,
    /// Each writer's last batch in the copy, and when it was written (fleet timeline).
    writers: Vec<Writer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Writer {
    id: u64,
    batch: u64,
    at: u64,
}

/// A batch of one writer's changes to a key, numbered so that it goes in once.
#[derive(Clone, Debug)]
pub(super) struct Batch {
    pub(super) number: u64,
    pub(super) events: Vec<Event>,
}

impl FleetCopy {
    /// The copy of a key nobody has written: CLOSED, empty.
    pub(super) fn new() -> Self {
        FleetCopy {
            state: BreakerState::new(),
            probes_until: 0,
            writers: Vec::new(),
        }
    }

    /// Applies each of `batches` of writer `writer` that is not in the copy yet, as of `now`
    /// (fleet timeline); `fleet_of` maps an instant of the writer's clock to the fleet's
    /// timeline. Gives back probe slots whose lease (at most `lease_nanos` from now, whatever
    /// the copy says) ran out first.
    pub(super) fn apply(
        &mut self,
        writer: u64,
        batches: &[Batch],
        config: &BreakerConfig,
        now: u64,
        lease_nanos: u64,
        fleet_of: &impl Fn(Instant) -> Instant,
    ) {
        self.probes_until = self.probes_until.min(now.saturating_add(lease_nanos));
        self.expire_probes(now);
        let applied = self
            .writers
            .iter()
            .find(|w| w.id == writer)
            .map(|w| w.batch);
        let mut last = None;
        for batch in batches {
            if applied.is_some_and(|applied| batch.number <= applied) {
                continue;
            }
            for event in &batch.events {
                event.apply(&mut self.state, config, fleet_of);
            }
            last = Some(batch.number);
        }
        if let Some(number) = last {
            self.written_by(writer, number, now);
        }
    }

    /// Takes a probe slot for the writer when the copy has one to give: an OPEN whose
    /// cooldown is over turns HALF_OPEN. Whether one was taken; it is leased for `lease_nanos`.
    pub(super) fn take_probe(
        &mut self,
        config: &BreakerConfig,
        now: u64,
        lease_nanos: u64,
    ) -> bool {
        match self.state.admit(config, &Instant::from_nanos(now)) {
            Ok((admission, _)) if admission.is_probe() => {
                self.probes_until = now.saturating_add(lease_nanos);
                true
            }
            // A CLOSED admission takes nothing from the copy.
            _ => false,
        }
    }

    /// Probe slots whose lease ran out are free again, in a new period: an outcome of a probe
    /// that outlived its lease then counts for nothing, and takes no other process's slot.
    fn expire_probes(&mut self, now: u64) {
        let state = &self.state;
        if state.status() == CircuitState::HalfOpen
            && state.probes_in_flight() > 0
            && now >= self.probes_until
        {
            self.state = BreakerState::restore(
                CircuitState::HalfOpen,
                *state.window(),
                state.failure_count(),
                Instant::ZERO,
                0,
                state.epoch().wrapping_add(1),
            );
        }
    }

    fn written_by(&mut self, writer: u64, batch: u64, now: u64) {
        self.writers
            .retain(|w| w.id != writer && now.saturating_sub(w.at) < WRITER_MEMORY_NANOS);
        if self.writers.len() >= MAX_WRITERS
            && let Some(oldest) = (0..self.writers.len()).min_by_key(|&i| self.writers[i].at)
        {
            self.writers.swap_remove(oldest);
        }
        self.writers.push(Writer {
            id: writer,
            batch,
            at: now,
        });
    }

    /// The copy's bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let state = &self.state;
        let window = state.window();
        let mut bytes = Vec::with_capacity(64 + usize::from(window.len()) / 8);
        bytes.extend_from_slice(&MAGIC);
        bytes.push(match state.status() {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        });
        bytes.extend_from_slice(&state.epoch().to_le_bytes());
        bytes.extend_from_slice(&state.failure_count().to_le_bytes());
        let until = state.open_until().map_or(0, |until| until.as_nanos());
        bytes.extend_from_slice(&until.to_le_bytes());
        bytes.extend_from_slice(&state.probes_in_flight().to_le_bytes());
        bytes.extend_from_slice(&self.probes_until.to_le_bytes());
        bytes.extend_from_slice(&window.len().to_le_bytes());
        let mut bits = vec![0u8; usize::from(window.len()).div_ceil(8)];
        for (i, outcome) in window.iter().enumerate() {
            if outcome == Outcome::Failure {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bytes.extend_from_slice(&bits);
        bytes.push(self.writers.len() as u8);
        for writer in &self.writers {
            for field in [writer.id, writer.batch, writer.at] {
                bytes.extend_from_slice(&field.to_le_bytes());
            }
        }
        bytes
    }

    /// The copy `bytes` hold; what is wrong with them when they are not a whole copy.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let mut input = Input(bytes);
        if input.take(4)? != MAGIC {
            return Err("not a breaker copy of this version");
        }
        let status = match input.u8()? {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            _ => return Err("an unknown state"),
        };
        let epoch = input.u32()?;
        let failures = input.u32()?;
        let until = input.u64()?;
        let probes = input.u16()?;
        let probes_until = input.u64()?;
        let len = input.u16()?;
        if len > MAX_WINDOW {
            return Err("a window longer than any breaker's");
        }
        let bits = input.take(usize::from(len).div_ceil(8))?;
        let mut window = SharedWindow::EMPTY;
        for i in 0..usize::from(len) {
            let outcome = if bits[i / 8] & (1 << (i % 8)) != 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            window.push(outcome, MAX_WINDOW);
        }
        let count = usize::from(input.u8()?);
        if count > MAX_WRITERS {
            return Err("more writers than a copy keeps");
        }
        let mut writers = Vec::with_capacity(count);
        for _ in 0..count {
            writers.push(Writer {
                id: input.u64()?,
                batch: input.u64()?,
                at: input.u64()?,
            });
        }
        if !input.0.is_empty() {
            return Err("bytes after the copy");
        }
        let state = BreakerState::restore(
            status,
            window,
            failures,
            Instant::from_nanos(until),
            probes,
            epoch,
        );
        Ok(FleetCopy {
            state,
            probes_until,
            writers,
        })
    }
}

/// The bytes not read yet.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < count {
            return Err("a copy cut short");
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("two bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use resilient_circuit::{Ratio, classify::Verdict, state::Admission};

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig::new()
            .failure_limit(Ratio::new(3, 3).unwrap())
            .success_limit(Ratio::new(1, 1).unwrap())
            .cooldown(std::time::Duration::from_secs(1))
    }

    fn failure(epoch: u32) -> Event {
        Event::Outcome {
            admission: Admission::in_period(epoch, false),
            verdict: Verdict::Failure,
            at: Instant::from_nanos(5),
        }
    }

    /// A copy tripped by writer 7 at 0 ns: OPEN until 1 s.
    fn tripped(config: &BreakerConfig) -> FleetCopy {
        let mut copy = FleetCopy::new();
        let trip = Batch {
            number: 1,
            events: vec![failure(0), failure(0), failure(0)],
        };
        copy.apply(7, &[trip], config, 0, 100, &|at| at);
        copy
    }

    #[test]
    fn a_copy_reads_back_as_it_was_written() {
        let mut copy = FleetCopy::new();
        let batch = Batch {
            number: 1,
            events: vec![failure(0), failure(0), failure(0)],
        };
        copy.apply(7, &[batch], &config(), 1_000, 0, &|at| at);
        assert_eq!(copy.state.status(), CircuitState::Open);
        assert_eq!(FleetCopy::decode(&copy.encode()), Ok(copy));
    }

    #[test]
    fn a_batch_goes_in_once_whatever_how_often_it_is_sent() {
        let mut copy = FleetCopy::new();
        let first = Batch {
            number: 1,
            events: vec![failure(0)],
        };
        let second = Batch {
            number: 2,
            events: vec![failure(0)],
        };
        copy.apply(7, std::slice::from_ref(&first), &config(), 1, 0, &|at| at);
        // The reply to the first was lost: both go again, with the second.
        copy.apply(7, &[first.clone(), second], &config(), 2, 0, &|at| at);
        copy.apply(8, &[first], &config(), 3, 0, &|at| at);
        assert_eq!(copy.state.window().failures(), 3);
    }

    #[test]
    fn bytes_that_are_not_a_whole_copy_are_refused() {
        let whole = FleetCopy::new().encode();
        for cut in 0..whole.len() {
            assert!(FleetCopy::decode(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        assert!(FleetCopy::decode(&longer).is_err());
        let mut unknown_state = whole;
        unknown_state[4] = 9;
        assert!(FleetCopy::decode(&unknown_state).is_err());
        assert!(FleetCopy::decode(b"{\"state\": \"open\"}").is_err());
    }

    #[test]
    fn a_probe_slot_nobody_gave_back_is_free_again_after_its_lease() {
        let config = config();
        let mut copy = tripped(&config);
        let after_cooldown = 2_000_000_000;
        assert!(copy.take_probe(&config, after_cooldown, 100));
        assert!(!copy.take_probe(&config, after_cooldown + 50, 100));
        copy.apply(8, &[], &config, after_cooldown + 100, 100, &|at| at);
        assert!(copy.take_probe(&config, after_cooldown + 100, 100));
    }

    /// The first probe outlives its lease and reports late: its outcome is of a period gone,
    /// and leaves the next probe's slot taken.
    #[test]
    fn a_probe_that_outlived_its_lease_takes_no_other_slot() {
        let config = config();
        let mut copy = tripped(&config);
        let after_cooldown = 2_000_000_000;
        assert!(copy.take_probe(&config, after_cooldown, 100));
        let first_probe = Admission::in_period(copy.state.epoch(), true);
        copy.apply(8, &[], &config, after_cooldown + 100, 100, &|at| at);
        assert!(copy.take_probe(&config, after_cooldown + 100, 100));
        let late = Batch {
            number: 2,
            events: vec![Event::Release {
                admission: first_probe,
            }],
        };
        copy.apply(7, &[late], &config, after_cooldown + 150, 100, &|at| at);
        assert_eq!(copy.state.probes_in_flight(), 1);
        assert!(!copy.take_probe(&config, after_cooldown + 150, 100));
    }

    /// A lease that ran out starts a new HALF_OPEN period; a process whose own copy went on to
    /// a CLOSED period of the same number does not count its calls as that period's probes.
    #[test]
    fn a_closed_outcome_is_never_taken_for_a_probe() {
        let config = config();
        let mut copy = tripped(&config);
        let after_cooldown = 2_000_000_000;
        assert!(copy.take_probe(&config, after_cooldown, 100));
        copy.apply(8, &[], &config, after_cooldown + 100, 100, &|at| at);
        let period = copy.state.epoch();
        let closed_failure = Batch {
            number: 2,
            events: vec![failure(period)],
        };
        copy.apply(
            7,
            &[closed_failure],
            &config,
            after_cooldown + 150,
            100,
            &|at| at,
        );
        assert_eq!(copy.state.status(), CircuitState::HalfOpen);
        assert_eq!(copy.state.window().len(), 0);
    }

    /// A stored lease far in the future (written by a host whose clock is ahead, or forged)
    /// holds a slot no longer than this process's lease.
    #[test]
    fn a_lease_is_never_longer_than_this_processs() {
        let config = config();
        let mut copy = tripped(&config);
        let after_cooldown = 2_000_000_000;
        assert!(copy.take_probe(&config, after_cooldown, u64::MAX));
        let mut read = FleetCopy::decode(&copy.encode()).unwrap();
        read.apply(8, &[], &config, after_cooldown + 1, 100, &|at| at);
        read.apply(8, &[], &config, after_cooldown + 101, 100, &|at| at);
        assert!(read.take_probe(&config, after_cooldown + 101, 100));
    }
}
