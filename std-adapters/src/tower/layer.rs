//! The layer that puts a breaker in front of a service.

use tower_layer::Layer;

use super::CircuitBreakerService;

/// Wraps services in a [`CircuitBreakerService`] guarded by one breaker.
///
/// `P` is a handle to the breaker (`Arc<breaker>` or `&'static breaker`); every service the
/// layer makes shares it, so they share one state.
///
/// ```
/// use std::sync::Arc;
/// use resilient_circuit_std::{BreakerConfig, BreakerKey, MemoryStore, tower::CircuitBreakerLayer};
///
/// let breaker = MemoryStore::new().breaker(BreakerKey::resource("search")?, BreakerConfig::new())?;
/// let layer = CircuitBreakerLayer::new(Arc::new(breaker));
/// let service = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service(tower::service_fn(|q: String| async move { Ok::<_, std::io::Error>(q.len()) }));
/// # let _ = service;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<P> {
    breaker: P,
}

impl<P> CircuitBreakerLayer<P> {
    /// A layer guarding every service it wraps with the breaker behind `breaker`.
    pub const fn new(breaker: P) -> Self {
        CircuitBreakerLayer { breaker }
    }
}

impl<S, P: Clone> Layer<S> for CircuitBreakerLayer<P> {
    type Service = CircuitBreakerService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone())
    }
}
