//! What a shared breaker tells the world: transitions, rejections, and hook panics.

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

use resilient_circuit::{CircuitState, TransitionHook, state::Transition};

use super::{counters::KeyCounters, replica::WorkerHook};
use crate::BreakerKey;

/// Runs the hook; a panic inside it is caught and reported, and the breaker carries on.
pub(crate) fn transition(
    key: &BreakerKey,
    hook: &(impl TransitionHook + ?Sized),
    from: CircuitState,
    to: CircuitState,
) {
    transition_event(key, from, to);
    run_hook(key, hook, from, to);
}

/// The event of a transition (with `tracing`), without any hook.
pub(crate) fn transition_event(key: &BreakerKey, from: CircuitState, to: CircuitState) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        namespace = key.namespace(),
        resource_key = key.resource_key(),
        from = from.as_str(),
        to = to.as_str(),
        "circuit breaker transition"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, from, to);
}

/// Runs one hook; a panic inside it is caught and reported.
pub(crate) fn run_hook(
    key: &BreakerKey,
    hook: &(impl TransitionHook + ?Sized),
    from: CircuitState,
    to: CircuitState,
) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook.on_status_change(from, to))) {
        hook_panicked(key, from, to, panic.as_ref());
    }
}

fn hook_panicked(key: &BreakerKey, from: CircuitState, to: CircuitState, panic: &(dyn Any + Send)) {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a non-string panic payload)");
    #[cfg(feature = "tracing")]
    tracing::error!(
        namespace = key.namespace(),
        resource_key = key.resource_key(),
        from = from.as_str(),
        to = to.as_str(),
        panic = message,
        "on_status_change hook panicked; the breaker carries on"
    );
    #[cfg(not(feature = "tracing"))]
    eprintln!(
        "resilient-circuit: breaker {key}: on_status_change hook panicked during {from} -> {to}: {message}; the breaker carries on"
    );
}

/// A call was refused.
#[inline]
pub(crate) fn rejection(key: &BreakerKey, retry_after: Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        namespace = key.namespace(),
        resource_key = key.resource_key(),
        retry_after_ms = retry_after.as_millis() as u64,
        "call rejected by an open circuit breaker"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, retry_after);
}

/// Something an operator must know about a store (an outage, a malformed row, a fallback):
/// never lost, so on stderr when no `tracing` subscriber would show it.
// Replication's alone (shared copies, PostgreSQL), which the loom model leaves out.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn store_warning(message: &str) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(tracing::Level::WARN) {
        tracing::warn!("{message}");
        return;
    }
    eprintln!("resilient-circuit: warning: {message}");
}

/// Something worth saying once about a store (which one is in use, a recovery).
#[cfg(feature = "postgres")]
pub(crate) fn store_info(message: &str) {
    #[cfg(feature = "tracing")]
    tracing::info!("{message}");
    #[cfg(not(feature = "tracing"))]
    eprintln!("resilient-circuit: {message}");
}

/// Reports a transition and runs every hook on it.
// Replication's alone (shared copies, PostgreSQL), which the loom model leaves out.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn announce(
    key: &BreakerKey,
    counters: &KeyCounters,
    transition: Option<Transition>,
    hooks: &[WorkerHook],
) {
    if let Some(transition) = transition {
        counters.transition(transition.from, transition.to);
        transition_event(key, transition.from, transition.to);
        for hook in hooks {
            run_hook(key, &**hook, transition.from, transition.to);
        }
    }
}
