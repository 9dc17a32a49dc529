//! Replay protection with bounded memory: a message id is accepted once, and only while its
//! timestamp is inside the window around now.

use super::EnvelopeError;
use std::collections::{HashSet, VecDeque};

/// Remembers the ids seen inside the window.
///
/// Soundness: an id leaves the set only when evicted, and every eviction raises `floor` to the
/// evicted timestamp; anything at or below `floor` is refused. So a seen id is either still
/// in the set or refused by the floor — never accepted twice. Eviction by age only touches
/// timestamps already outside the window; eviction by the size cap (overload) may refuse
/// late-but-valid messages, which is the price of bounded memory.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    max_entries: usize,
    seen: HashSet<[u8; 16]>,
    order: VecDeque<(u64, [u8; 16])>,
    floor_ms: u64,
}

impl ReplayGuard {
    pub fn new(window_ms: u64, max_entries: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms,
            max_entries: max_entries.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            floor_ms: 0,
        }
    }

    fn evict_front(&mut self) {
        if let Some((ts, id)) = self.order.pop_front() {
            self.seen.remove(&id);
            self.floor_ms = self.floor_ms.max(ts);
        }
    }

    /// Accepts `id` (stamped `ts_ms`) once; call only after the message authenticated, so a
    /// forger cannot fill the cache.
    pub fn check(&mut self, id: [u8; 16], ts_ms: u64, now_ms: u64) -> Result<(), EnvelopeError> {
        let skew = ts_ms as i64 - now_ms as i64;
        if skew.unsigned_abs() > self.window_ms {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        while self
            .order
            .front()
            .is_some_and(|(ts, _)| ts.saturating_add(self.window_ms) < now_ms)
        {
            self.evict_front();
        }
        if ts_ms <= self.floor_ms && self.floor_ms > 0 {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        if self.seen.contains(&id) {
            return Err(EnvelopeError::Replay(
                id.iter().map(|b| format!("{b:02x}")).collect(),
            ));
        }
        while self.order.len() >= self.max_entries {
            self.evict_front();
        }
        self.seen.insert(id);
        self.order.push_back((ts_ms, id));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_stale_messages_are_refused() {
        let mut g = ReplayGuard::new(1_000, 100);
        assert!(g.check([1; 16], 10_000, 10_000).is_ok());
        assert!(matches!(
            g.check([1; 16], 10_000, 10_001),
            Err(EnvelopeError::Replay(_))
        ));
        assert!(matches!(
            g.check([2; 16], 8_000, 10_000),
            Err(EnvelopeError::OutsideWindow { .. })
        ));
        // After the window the id is forgotten, and its timestamp is refused anyway.
        assert!(g.check([3; 16], 12_000, 12_000).is_ok());
        assert!(g.check([1; 16], 10_000, 12_000).is_err());
    }

    #[test]
    fn memory_stays_bounded_and_no_duplicate_slips_through_the_cap() {
        let mut g = ReplayGuard::new(60_000, 50);
        for i in 0..1_000u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            assert!(g.check(id, 1_000_000 + i, 1_000_000 + i).is_ok());
            assert!(g.len() <= 50);
        }
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&3u64.to_be_bytes());
        assert!(
            g.check(old, 1_000_003, 1_001_000).is_err(),
            "evicted duplicate accepted"
        );
    }
}
