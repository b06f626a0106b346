//! How a store has a breaker's hook told of transitions.

use crate::{TransitionHook, store::StateStore};

/// How a store has a breaker's [`TransitionHook`] told of transitions: what
/// [`CircuitProtector::on_status_change`](crate::CircuitProtector::on_status_change) asks of
/// the store.
///
/// Most stores see every transition through their own breaker's calls, and the breaker runs
/// the hook itself on the thread whose call made it: those stores implement [`LocalHooks`],
/// and this trait comes with it. A store whose state also changes elsewhere (the std crate's
/// PostgreSQL store, where a peer process can open the breaker) implements this trait itself,
/// to keep the hook where it can be called from there too, and may ask more of the hook (that
/// it be `Send + Sync + 'static`).
pub trait Watch<H>: StateStore {
    /// The hook as the breaker holds it.
    type Hook: TransitionHook;

    /// Takes `hook` for a breaker on this store; the breaker calls what this returns (through
    /// [`StateStore::announce`]) on every transition its calls make.
    fn watch(&self, hook: H) -> Self::Hook;
}

/// A store whose transitions are all made by its breakers' calls, so the breaker holds its
/// hook as it is and runs it itself: the core's stores, and most stores of your own
/// (`impl LocalHooks for MyStore {}`).
pub trait LocalHooks: StateStore {}

impl<S: LocalHooks, H: TransitionHook> Watch<H> for S {
    type Hook = H;

    #[inline]
    fn watch(&self, hook: H) -> H {
        hook
    }
}

impl<S: LocalHooks + ?Sized> LocalHooks for &S {}
