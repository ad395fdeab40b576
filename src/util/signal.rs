//! SIGINT and SIGTERM as a flag to poll. A handler only raises the flag (all a handler may
//! safely do). Not a blocked mask and `sigwait`: a mask is inherited by children, which then
//! could not be stopped; a handler is reset by `exec`.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn raise_flag(sig: i32) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// The flag, once installed: which signal came, if one did.
#[derive(Debug, Clone, Copy)]
pub struct StopFlag(());

impl StopFlag {
    /// Catch SIGINT and SIGTERM from now on.
    pub fn install() -> nix::Result<StopFlag> {
        let action = SigAction::new(
            SigHandler::Handler(raise_flag),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(StopFlag(()))
    }

    /// The name of the signal that came, if one did.
    pub fn get(&self) -> Option<&'static str> {
        match SIGNALLED.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(Signal::try_from(sig).map_or("a signal", |s| s.as_str())),
        }
    }
}
