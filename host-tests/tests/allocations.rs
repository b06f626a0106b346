//! A counting global allocator: a protected call allocates nothing in steady state.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    time::Duration,
};

use resilient_circuit_std::{
    Breaker, BreakerConfig, BreakerKey, MemoryStore, Policy, Ratio, RetryWithBackoff, SafetyNet,
};

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only a
// thread-local integer and never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn protected_calls_allocate_nothing_in_steady_state() {
    let store = MemoryStore::new();
    let config = BreakerConfig::new()
        .failure_limit(Ratio::new(50, 100).unwrap())
        .cooldown(Duration::from_secs(60));
    let breaker = store
        .breaker(BreakerKey::resource("alloc").unwrap(), config)
        .unwrap();
    // Warm up: fill the window.
    for _ in 0..200 {
        let _ = breaker.call(|| Ok::<_, &str>(()));
    }
    assert_eq!(
        allocations_during(|| for _ in 0..10_000 {
            let _ = breaker.call(|| Ok::<_, &str>(()));
        }),
        0,
        "CLOSED successes"
    );
    assert_eq!(
        allocations_during(|| for i in 0..10_000 {
            let _ = breaker.call(|| if i % 10 == 0 { Err("down") } else { Ok(()) });
        }),
        0,
        "CLOSED with failures in the window"
    );
    assert_eq!(
        allocations_during(|| {
            let mut net = SafetyNet::new((RetryWithBackoff::new(2), &breaker));
            for _ in 0..10_000 {
                let _ = net.call(|| Ok::<_, &str>(()));
            }
        }),
        0,
        "a SafetyNet of retry and breaker"
    );
    breaker.force_open().unwrap();
    assert_eq!(
        allocations_during(|| for _ in 0..10_000 {
            let _ = breaker.call(|| Ok::<_, &str>(()));
        }),
        0,
        "rejections"
    );
}
