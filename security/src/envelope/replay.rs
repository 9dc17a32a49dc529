//! Replay protection with bounded memory: a message is accepted once, and only while its
//! timestamp is inside the window around now.
//!
//! A message id is an 8-byte *stream* id and an 8-byte counter that rises with each message of
//! the stream (a sealer's session and its message count; `docs/envelope.md`). Each stream gets
//! a sliding bitmap of the counters accepted — the anti-replay window of IPsec (RFC 4303
//! §3.4.3), made as long as the time window needs. One bit per message instead of a hashed
//! 16-byte id in a set of a million: the check touches memory its neighbours just touched.
//!
//! Soundness (no message accepted twice):
//! - a counter below its stream's `base` is refused; `base` only rises;
//! - a stream forgotten as a whole (idle past the window, or evicted for memory) raises
//!   `floor_ms` to the newest timestamp it accepted, and anything stamped at or below the floor
//!   is refused — so every message it accepted stays refused.
//!
//! False rejections happen only at the memory bounds: a message delayed by more than a
//! stream's whole bitmap (`max_entries` messages), or one stamped at or below the timestamps
//! of a stream evicted because more than `max_streams` were live at once.

use super::{EnvelopeError, KeyId};
use std::collections::{HashMap, VecDeque};

const WORD_BITS: u64 = 64;
/// A stream first seen at counter c also covers the 1,024 counters below c: messages sealed
/// just before it that arrive just after it (another publishing task, another subscription's
/// backlog) are still accepted once.
const LOOKBACK_WORDS: u64 = 16;

/// The counters one stream has had accepted, from `base` on.
#[derive(Debug)]
struct Stream {
    /// Counter of the first bit of `words[0]`; a multiple of 64.
    base: u64,
    words: VecDeque<u64>,
    /// Per word, a timestamp no counter in it was sealed after: the oldest accepted timestamp
    /// in the word, or for a word no message has reached yet, that of the message that made
    /// it (every counter below a message's was sealed before it).
    sealed_by: VecDeque<u64>,
    /// Newest timestamp accepted in the stream.
    newest_ms: u64,
    /// For least-recently-used eviction.
    last_use: u64,
}

impl Stream {
    fn new(counter: u64) -> Stream {
        Stream {
            base: (counter - counter % WORD_BITS).saturating_sub(LOOKBACK_WORDS * WORD_BITS),
            words: VecDeque::new(),
            sealed_by: VecDeque::new(),
            newest_ms: 0,
            last_use: 0,
        }
    }

    /// Drops leading words whose every counter was sealed before the window began: the
    /// word after them was (counters are sealed in order). The last word always stays.
    fn expire(&mut self, oldest_fresh_ms: u64) {
        while self.words.len() > 1 && self.sealed_by[1] < oldest_fresh_ms {
            self.pop_front();
        }
    }

    /// Marks `counter` (stamped `ts_ms`) accepted unless it already is or lies below the
    /// window; the stream holds at most `max_words` words, sliding past its oldest.
    fn accept(
        &mut self,
        counter: u64,
        ts_ms: u64,
        oldest_fresh_ms: u64,
        max_words: usize,
    ) -> Result<(), Refusal> {
        self.expire(oldest_fresh_ms);
        if counter < self.base {
            return Err(Refusal::BelowWindow);
        }
        let word = ((counter - self.base) / WORD_BITS) as usize;
        if word >= max_words {
            let slide = word + 1 - max_words;
            if slide >= self.words.len() {
                self.words.clear();
                self.sealed_by.clear();
                self.base = counter - counter % WORD_BITS - (max_words as u64 - 1) * WORD_BITS;
            } else {
                (0..slide).for_each(|_| self.pop_front());
            }
        }
        let word = ((counter - self.base) / WORD_BITS) as usize;
        while self.words.len() <= word {
            self.words.push_back(0);
            self.sealed_by.push_back(ts_ms);
        }
        let bit = 1u64 << ((counter - self.base) % WORD_BITS);
        if self.words[word] & bit != 0 {
            return Err(Refusal::Seen);
        }
        self.words[word] |= bit;
        self.sealed_by[word] = self.sealed_by[word].min(ts_ms);
        self.newest_ms = self.newest_ms.max(ts_ms);
        Ok(())
    }

    fn pop_front(&mut self) {
        self.words.pop_front();
        self.sealed_by.pop_front();
        self.base += WORD_BITS;
    }
}

enum Refusal {
    Seen,
    BelowWindow,
}

/// Remembers which messages were accepted inside the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    /// Bitmap words all streams may hold together (`max_entries / 64`).
    max_words: usize,
    max_streams: usize,
    words: usize,
    streams: HashMap<(KeyId, [u8; 8]), Stream, foldhash::fast::RandomState>,
    floor_ms: u64,
    uses: u64,
    last_sweep_ms: u64,
}

impl ReplayGuard {
    /// A guard for a `window_ms` window that remembers at most `max_entries` messages (one bit
    /// each, plus 8 bytes per 64) across at most `max_streams` streams.
    pub fn new(window_ms: u64, max_entries: usize, max_streams: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms,
            max_words: (max_entries / WORD_BITS as usize).max(1),
            max_streams: max_streams.max(1),
            words: 0,
            streams: HashMap::default(),
            floor_ms: 0,
            uses: 0,
            last_sweep_ms: 0,
        }
    }

    /// Accepts message `counter` of stream `stream_id` from the sender key `sender`, stamped
    /// `ts_ms`, once; call only after the message authenticated, so a forger cannot fill the
    /// memory.
    pub fn check(
        &mut self,
        sender: &KeyId,
        stream_id: [u8; 8],
        counter: u64,
        ts_ms: u64,
        now_ms: u64,
    ) -> Result<(), EnvelopeError> {
        let skew = ts_ms as i64 - now_ms as i64;
        if skew.unsigned_abs() > self.window_ms {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        if ts_ms <= self.floor_ms && self.floor_ms > 0 {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        let oldest_fresh_ms = now_ms.saturating_sub(self.window_ms);
        if now_ms.saturating_sub(self.last_sweep_ms) >= self.window_ms / 4 {
            self.last_sweep_ms = now_ms;
            self.forget_idle(oldest_fresh_ms);
        }
        let key = (*sender, stream_id);
        if !self.streams.contains_key(&key) && self.streams.len() >= self.max_streams {
            self.evict_least_recent(None);
        }
        self.uses += 1;
        let uses = self.uses;
        let stream = self
            .streams
            .entry(key)
            .or_insert_with(|| Stream::new(counter));
        stream.last_use = uses;
        let before = stream.words.len();
        let accepted = stream.accept(counter, ts_ms, oldest_fresh_ms, self.max_words);
        self.words = self.words + stream.words.len() - before;
        let id = || hex::encode(super::message_id(&stream_id, counter));
        match accepted {
            Err(Refusal::Seen) => return Err(EnvelopeError::Replay(id())),
            Err(Refusal::BelowWindow) => return Err(EnvelopeError::BeyondReplayWindow(id())),
            Ok(()) => {}
        }
        while self.words > self.max_words {
            self.evict_least_recent(Some(key));
        }
        Ok(())
    }

    /// Forgets streams with nothing accepted inside the window.
    fn forget_idle(&mut self, oldest_fresh_ms: u64) {
        let mut floor = self.floor_ms;
        let mut freed = 0;
        self.streams.retain(|_, s| {
            let keep = s.newest_ms >= oldest_fresh_ms;
            if !keep {
                floor = floor.max(s.newest_ms);
                freed += s.words.len();
            }
            keep
        });
        self.floor_ms = floor;
        self.words -= freed;
    }

    /// Frees memory: the least recently used stream other than `keep` goes (raising the
    /// floor); if `keep` is the only one, its oldest word goes.
    fn evict_least_recent(&mut self, keep: Option<(KeyId, [u8; 8])>) {
        let victim = self
            .streams
            .iter()
            .filter(|(k, _)| Some(**k) != keep)
            .min_by_key(|(_, s)| s.last_use)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                if let Some(s) = self.streams.remove(&k) {
                    self.floor_ms = self.floor_ms.max(s.newest_ms);
                    self.words -= s.words.len();
                }
            }
            None => {
                if let Some(s) = keep.and_then(|k| self.streams.get_mut(&k)) {
                    if s.words.len() > 1 {
                        s.pop_front();
                        self.words -= 1;
                    }
                }
            }
        }
    }

    /// Messages remembered as bitmap capacity (64 per word held).
    pub fn capacity_in_use(&self) -> usize {
        self.words * WORD_BITS as usize
    }

    pub fn streams(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: KeyId = KeyId([7; 8]);

    #[test]
    fn duplicates_and_stale_messages_are_refused() {
        let mut g = ReplayGuard::new(1_000, 1 << 16, 16);
        assert!(g.check(&K, [1; 8], 0, 10_000, 10_000).is_ok());
        assert!(matches!(
            g.check(&K, [1; 8], 0, 10_000, 10_001),
            Err(EnvelopeError::Replay(_))
        ));
        // The same counter in another stream, or from another sender, is another message.
        assert!(g.check(&K, [2; 8], 0, 10_000, 10_001).is_ok());
        assert!(g.check(&KeyId([8; 8]), [1; 8], 0, 10_000, 10_001).is_ok());
        assert!(matches!(
            g.check(&K, [1; 8], 1, 8_000, 10_000),
            Err(EnvelopeError::OutsideWindow { .. })
        ));
        // After the window the stream is forgotten, and its timestamps are refused anyway.
        assert!(g.check(&K, [3; 8], 0, 12_000, 12_000).is_ok());
        assert!(g.check(&K, [1; 8], 0, 10_000, 12_000).is_err());
    }

    #[test]
    fn out_of_order_and_gapped_counters_are_accepted_once() {
        let mut g = ReplayGuard::new(60_000, 1 << 16, 16);
        // A queue worker sees every third message, some late: all accepted, each once.
        let mut order: Vec<u64> = (0..3_000).step_by(3).collect();
        order.swap(10, 500);
        order.swap(11, 900);
        for (i, c) in order.iter().enumerate() {
            let t = 1_000_000 + i as u64;
            assert!(g.check(&K, [1; 8], *c, t, t).is_ok(), "counter {c}");
        }
        for c in order {
            assert!(g.check(&K, [1; 8], c, 1_002_000, 1_002_000).is_err());
        }
    }

    #[test]
    fn a_late_counter_sealed_between_two_accepted_ones_is_still_accepted_once() {
        let mut g = ReplayGuard::new(1_000, 1 << 16, 16);
        // Counter 1 is older than the window's start by now, but counter 2 was sealed after it
        // (before counter 100) and may still be in flight: its word must still be there.
        assert!(g.check(&K, [1; 8], 1, 10_000, 10_000).is_ok());
        assert!(g.check(&K, [1; 8], 100, 10_500, 10_500).is_ok());
        assert!(g.check(&K, [1; 8], 2, 10_400, 11_200).is_ok());
        assert!(g.check(&K, [1; 8], 2, 10_400, 11_201).is_err());
        // A stream quiet for longer than the window is forgotten; when it speaks again, late
        // counters below its new first one are accepted once, and its old ones stay refused.
        assert!(g.check(&K, [2; 8], 10, 20_000, 20_000).is_ok());
        assert!(g.check(&K, [2; 8], 500, 23_000, 23_000).is_ok());
        assert!(g.check(&K, [2; 8], 499, 22_990, 23_001).is_ok());
        assert!(g.check(&K, [2; 8], 499, 22_990, 23_002).is_err());
        assert!(g.check(&K, [2; 8], 10, 20_000, 23_003).is_err());
    }

    #[test]
    fn memory_stays_bounded_and_no_duplicate_slips_through_the_bounds() {
        // 4,096 messages of budget, 4 streams: one long stream slides, many streams evict.
        let mut g = ReplayGuard::new(600_000, 4_096, 4);
        for c in 0..100_000u64 {
            let t = 1_000_000 + c / 100;
            assert!(g.check(&K, [1; 8], c, t, t).is_ok());
            assert!(g.capacity_in_use() <= 4_096);
        }
        assert!(g.check(&K, [1; 8], 5, 1_000_000, 1_001_000).is_err());
        assert!(g.check(&K, [1; 8], 99_999, 1_000_999, 1_001_000).is_err());
        for s in 2..40u8 {
            let t = 1_001_000 + u64::from(s);
            assert!(g.check(&K, [s; 8], 0, t, t).is_ok());
            assert!(g.streams() <= 4);
        }
        // Stream 2 was evicted: its message stays refused (the floor rose past it).
        assert!(g.check(&K, [2; 8], 0, 1_001_002, 1_001_050).is_err());
    }
}
