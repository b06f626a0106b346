//! Breakers shared by a fleet through a key-value store of your own: the [`SharedCopies`] seam.
//!
//! A store made by [`MemoryStore::replicated`](crate::MemoryStore::replicated) keeps each key's
//! state in the process, as every [`MemoryStore`](crate::MemoryStore) does (a call never waits for
//! the network), and a thread carries the key's changes to its shared copy and the copy back: one
//! atomic read-modify-write of the copy's bytes, through [`SharedCopies::update`], at least every
//! `max_staleness` and at once after a failure or when a probe is wanted. The copy decides the
//! transitions, as the PostgreSQL store's row does; every process applies its own configuration.
//! Each process's changes go in exactly once, even when an update's reply is lost; deadlines are on
//! the hosts' clocks (keep them in sync); a process that took a probe slot and vanished gives it
//! back after the probe lease. The bytes are this library's (a versioned binary form): a stored
//! value it cannot read is left as it is, and the process keeps to its own copy of that key.
//! Dropping the store sends what its keys have not sent yet; a breaker that outlives its store
//! keeps replicating until it is dropped. During an outage at most 1024 changes of a key wait for
//! the store; past that the oldest go (the process's own copy has counted them all). Manual control
//! ([`force_open`](crate::breaker::CircuitProtector::force_open) and the others) writes the copy on
//! the caller's thread; an error means its update failed, which, as any update's error, may have
//! stored it all the same. A copy remembers the last batch of 256 writers a key, each for a day:
//! more processes than that writing one key may apply a batch twice after a lost reply.
//!
//! ```
//! use std::{collections::HashMap, sync::{Arc, Mutex}};
//! use resilient_circuit_std::{Breaker, BreakerConfig, MemoryStore, Ratio, store::{CopyError, SharedCopies}};
//!
//! /// Every process's copies in one map; Redis would run `change` between WATCH and EXEC.
//! #[derive(Default)]
//! struct InMemory(Mutex<HashMap<String, Vec<u8>>>);
//!
//! impl SharedCopies for InMemory {
//!     fn update(&self, key: &str, change: &mut dyn FnMut(Option<&[u8]>) -> Vec<u8>) -> Result<(), CopyError> {
//!         let mut copies = self.0.lock().map_err(|_| "poisoned")?;
//!         let new = change(copies.get(key).map(Vec::as_slice));
//!         copies.insert(key.to_owned(), new);
//!         Ok(())
//!     }
//! }
//!
//! let copies = Arc::new(InMemory::default());
//! let (here, there) = (MemoryStore::replicated(copies.clone()).build(), MemoryStore::replicated(copies).build());
//! let config = BreakerConfig::new().failure_limit(Ratio::new(1, 1)?);
//! // An operator opens the breaker for the whole fleet: the copy is updated before this returns.
//! here.breaker("payments", config)?.force_open()?;
//! // Another process's new breaker of the key starts from the copy: OPEN.
//! assert!(there.breaker("payments", config)?.call(|| Ok::<_, &str>(())).unwrap_err().is_rejected());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod copy;
mod driver;
mod options;
mod seam;

pub use builder::ReplicatedBuilder;
pub use seam::{CopyError, SharedCopies};
