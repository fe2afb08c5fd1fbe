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
//! saw. A connection keeps at most `most` prepared; to make room it closes
//! the least recently used only if that one went unused for
//! [`STALE_AFTER`], else the newcomer runs unnamed. Few busy tenants:
//! every statement prepared, planned once. Thousands of tenants in
//! rotation: the first `most` texts stay prepared and the others run
//! unnamed, rather than each one evicting another (a least-recently-used
//! cache smaller than a rotation never hits, and each eviction costs a
//! prepare and a close); the backend's memory stays bounded either way.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How many texts a connection remembers having seen, per statement it
/// may keep: a text that comes back later than that runs unnamed again.
const SEEN_PER_KEPT: usize = 4;

/// A kept statement unused for this long may be closed for another.
const STALE_AFTER: Duration = Duration::from_secs(30);

pub(super) struct Kept {
    most: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Text hash → (last use, text).
    prepared: HashMap<u64, (Instant, Box<str>)>,
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

    /// Choose for `text` (hashed as `hash`), at `now`. `must_prepare`: the
    /// caller cannot run it unnamed (its parameter types are not known yet).
    pub(super) fn choose(&self, hash: u64, text: &str, must_prepare: bool, now: Instant) -> Choice {
        if self.most == 0 && !must_prepare {
            return Choice::Unnamed;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = state.prepared.get_mut(&hash) {
            entry.0 = now;
            return Choice::Prepare { close: None };
        }
        if !must_prepare && !state.remember(hash, self.most) {
            return Choice::Unnamed;
        }
        let mut close = None;
        if state.prepared.len() >= self.most.max(1) {
            let (&oldest, &(last, _)) = state.prepared.iter().min_by_key(|(_, (last, _))| *last).expect("full");
            if !must_prepare && now.duration_since(last) < STALE_AFTER {
                state.seen.insert(hash); // it may find room when it comes back
                return Choice::Unnamed;
            }
            close = state.prepared.remove(&oldest).map(|(_, text)| text);
        }
        state.prepared.insert(hash, (now, text.into()));
        Choice::Prepare { close }
    }

    /// The connection was replaced: it keeps nothing.
    pub(super) fn forget(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.prepared.clear();
        state.seen.clear();
    }
}

impl State {
    /// Whether `hash` came back while remembered; remember it otherwise.
    fn remember(&mut self, hash: u64, most: usize) -> bool {
        if self.seen.remove(&hash) {
            return true;
        }
        if self.seen.len() >= most.max(1) * SEEN_PER_KEPT {
            self.seen.clear();
        }
        self.seen.insert(hash);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepares(choice: Choice) -> bool {
        matches!(choice, Choice::Prepare { .. })
    }

    #[test]
    fn a_text_is_prepared_when_it_comes_back_and_a_stale_one_makes_room() {
        let kept = Kept::new(2);
        let t0 = Instant::now();
        assert!(!prepares(kept.choose(1, "a", false, t0)), "first run: unnamed");
        assert!(prepares(kept.choose(1, "a", false, t0)), "back: prepared");
        assert!(prepares(kept.choose(1, "a", false, t0)), "still prepared");
        kept.choose(2, "b", false, t0);
        assert!(prepares(kept.choose(2, "b", false, t0)));
        kept.choose(3, "c", false, t0);
        assert!(!prepares(kept.choose(3, "c", false, t0)), "full of fresh ones: c runs unnamed");
        let later = t0 + STALE_AFTER;
        kept.choose(1, "a", false, later); // a is used again, b is stale
        match kept.choose(3, "c", false, later) {
            Choice::Prepare { close } => assert_eq!(close.as_deref(), Some("b")),
            Choice::Unnamed => panic!("c came back and b is stale: c is prepared"),
        }
        assert!(prepares(kept.choose(1, "a", false, later)), "a stays");
        assert!(!prepares(kept.choose(2, "b", false, later)), "b was closed and is seen anew");
    }

    #[test]
    fn texts_that_come_back_seldom_stay_unnamed() {
        let kept = Kept::new(2);
        let now = Instant::now();
        for round in 0..3 {
            for hash in 0..(2 * SEEN_PER_KEPT as u64 + 1) {
                assert!(!prepares(kept.choose(hash, "t", false, now)), "round {round}, text {hash}");
            }
        }
    }

    #[test]
    fn a_text_whose_types_are_unknown_is_prepared_at_once() {
        let kept = Kept::new(1);
        let now = Instant::now();
        assert!(prepares(kept.choose(7, "x", true, now)));
        assert!(prepares(kept.choose(7, "x", false, now)));
        assert!(prepares(kept.choose(8, "y", true, now)), "even when full of fresh ones");
        kept.forget();
        assert!(!prepares(kept.choose(7, "x", false, now)));
    }
}
