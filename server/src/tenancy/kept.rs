//! Which tenant statements a lane's connection keeps prepared.
//!
//! Why: tenant statements are qualified with the tenant's schema, so each
//! tenant's copy of a statement is a statement of its own, and a prepared
//! one costs its backend memory for as long as it is kept (about 100 KiB
//! with its plan for the batch statements; 512 per connection held most of
//! the backends' 1 GiB over 1,000 tenants, docs/performance.md section 11).
//! Preparing pays off only for a statement that comes back often: the
//! first five runs of a prepared statement are planned anyway. So a text
//! runs unnamed the first time a connection sees it (parse, bind and
//! execute in one round trip, nothing kept), and is prepared when it comes
//! back while the connection still remembers it among the last texts it
//! saw. A connection keeps at most `most` prepared; the least recently used
//! is closed to make room. Few busy tenants: every statement prepared,
//! planned once. Thousands of tenants coming back seldom: nothing kept,
//! each statement planned at each run, the backend's memory bounded.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
};

/// How many texts a connection remembers having seen, per statement it
/// may keep: a text that comes back later than that runs unnamed again.
const SEEN_PER_KEPT: usize = 4;

pub(super) struct Kept {
    most: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tick: u64,
    /// Text hash → (last use, text).
    prepared: HashMap<u64, (u64, Box<str>)>,
    seen: HashSet<u64>,
}

/// What to do with a text on this connection.
pub(super) enum Choice {
    /// Run it unnamed.
    Unnamed,
    /// Prepare it (or use it prepared), and close these first.
    Prepare { close: Option<Box<str>> },
}

impl Kept {
    pub(super) fn new(most: usize) -> Self {
        Self { most, state: Mutex::new(State::default()) }
    }

    /// Choose for `text` (hashed as `hash`). `must_prepare`: the caller
    /// cannot run it unnamed (its parameter types are not known yet).
    pub(super) fn choose(&self, hash: u64, text: &str, must_prepare: bool) -> Choice {
        if self.most == 0 && !must_prepare {
            return Choice::Unnamed;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tick += 1;
        let tick = state.tick;
        if let Some(entry) = state.prepared.get_mut(&hash) {
            entry.0 = tick;
            return Choice::Prepare { close: None };
        }
        if !must_prepare && !state.seen.remove(&hash) {
            if state.seen.len() >= self.most.max(1) * SEEN_PER_KEPT {
                state.seen.clear();
            }
            state.seen.insert(hash);
            return Choice::Unnamed;
        }
        let close = if state.prepared.len() >= self.most.max(1) {
            let oldest = state.prepared.iter().min_by_key(|(_, (last, _))| *last).map(|(hash, _)| *hash);
            oldest.and_then(|hash| state.prepared.remove(&hash)).map(|(_, text)| text)
        } else {
            None
        };
        state.prepared.insert(hash, (tick, text.into()));
        Choice::Prepare { close }
    }

    /// The connection was replaced: it keeps nothing.
    pub(super) fn forget(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.prepared.clear();
        state.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepares(choice: Choice) -> bool {
        matches!(choice, Choice::Prepare { .. })
    }

    #[test]
    fn a_text_is_prepared_when_it_comes_back_and_the_least_recent_is_closed() {
        let kept = Kept::new(2);
        assert!(!prepares(kept.choose(1, "a", false)), "first run: unnamed");
        assert!(prepares(kept.choose(1, "a", false)), "back: prepared");
        assert!(prepares(kept.choose(1, "a", false)), "still prepared");
        kept.choose(2, "b", false);
        assert!(prepares(kept.choose(2, "b", false)));
        kept.choose(1, "a", false); // "a" used more recently than "b"
        kept.choose(3, "c", false);
        match kept.choose(3, "c", false) {
            Choice::Prepare { close } => assert_eq!(close.as_deref(), Some("b")),
            Choice::Unnamed => panic!("c came back: prepared"),
        }
        assert!(prepares(kept.choose(1, "a", false)), "a stays");
        assert!(!prepares(kept.choose(2, "b", false)), "b was closed and is seen anew");
    }

    #[test]
    fn texts_that_come_back_seldom_stay_unnamed() {
        let kept = Kept::new(2);
        for round in 0..3 {
            for hash in 0..(2 * SEEN_PER_KEPT as u64 + 1) {
                assert!(!prepares(kept.choose(hash, "t", false)), "round {round}, text {hash}");
            }
        }
    }

    #[test]
    fn a_text_whose_types_are_unknown_is_prepared_at_once() {
        let kept = Kept::new(2);
        assert!(prepares(kept.choose(7, "x", true)));
        assert!(prepares(kept.choose(7, "x", false)));
        kept.forget();
        assert!(!prepares(kept.choose(7, "x", false)));
    }
}
