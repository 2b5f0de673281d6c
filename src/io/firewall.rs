//! The last firewall around dependency code that may panic on malformed input (a decoder
//! indexing by file data). Readers validate first; this only keeps a bug in a dependency from
//! taking the process down or printing its panic as ffvol's message.
//!
//! [`guard`] runs a closure under `catch_unwind` with a thread-local flag set; the CLI's panic
//! hook ([`install_quiet_hook`]) stays silent for panics raised under the flag, so the caller's
//! clear error is the only message.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`; a panic inside it becomes `Err(())` (the caller turns it into an error naming the
/// file and what failed).
pub fn guard<T>(f: impl FnOnce() -> T) -> std::result::Result<T, ()> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let out = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    out.map_err(|_| ())
}

/// Whether this thread is inside [`guard`].
pub fn guarded() -> bool {
    GUARDED.with(|g| g.get() > 0)
}

/// Installs a panic hook that is silent inside [`guard`] and the default hook elsewhere.
pub fn install_quiet_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !guarded() {
            default(info)
        }
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_inside_the_guard_is_an_error_and_the_flag_is_restored() {
        assert_eq!(super::guard(|| 3), Ok(3));
        assert_eq!(super::guard(|| -> i32 { panic!("decoder bug") }), Err(()));
        assert!(!super::guarded());
    }
}
