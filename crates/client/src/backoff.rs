//! Exponential backoff with jitter, bounded by [`crate::limits::BACKOFF_MAX`].

use std::time::Duration;

use rand::Rng;

use crate::limits::{BACKOFF_FIRST, BACKOFF_MAX};

/// The pause before the next attempt: doubles from `BACKOFF_FIRST` up to
/// `BACKOFF_MAX`; each pause is drawn from the upper half of the current
/// step so that clients retrying together spread out.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Upper bound of the next pause.
    step: Duration,
}

impl Backoff {
    /// A backoff at its first step.
    pub(crate) fn new() -> Self {
        Backoff { step: BACKOFF_FIRST }
    }

    /// The next pause; advances the step.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step_millis = self.step.as_millis() as u64;
        assert!(step_millis > 0, "the backoff step is never zero");
        let millis = rand::rng().random_range(step_millis / 2..=step_millis);
        self.step = (self.step * 2).min(BACKOFF_MAX);
        let delay = Duration::from_millis(millis);
        assert!(delay <= BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first >= BACKOFF_FIRST / 2 && first <= BACKOFF_FIRST);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= BACKOFF_MAX);
        }
        assert!(backoff.next_delay() >= BACKOFF_MAX / 2);
    }
}
