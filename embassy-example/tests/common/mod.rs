//! What the host tests share: virtual time on embassy-time's mock driver.

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use embassy_time::{Duration, MockDriver};

/// Polls `future`, moving the mock clock one millisecond whenever it waits.
pub fn run_on_virtual_time<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        MockDriver::get().advance(Duration::from_millis(1));
    }
}
