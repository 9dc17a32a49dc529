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
//! - a stream forgotten as a whole (idle past the window, or evicted for memory) raises its
//!   *sender key's* floor to the newest timestamp it accepted, and anything that sender
//!   stamped at or below its floor is refused — so every message it accepted stays refused.
//!
//! Isolation (one authenticated sender cannot make us refuse another's messages): floors are
//! per sender key, timestamps may lead our clock by [`FUTURE_SKEW_MS`] only (so a floor lies at
//! most that far above now, and only for the sender that was forgotten), and each sender key
//! holds at most a sixteenth of the streams and of the bitmap: one that opens more streams or
//! jumps its counters evicts its own state. Senders are keys in the verified directory, a
//! handful per service, so the shares together reach the whole budget only if sixteen keys are
//! at their share at once.
//!
//! False rejections happen only at the memory bounds: a message delayed by more than its
//! sender's share of the bitmap (`max_entries / 16` messages), or one stamped at or below the
//! timestamps of a stream of the same sender evicted for memory.

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

/// How far ahead of our clock a timestamp may be. Small: whatever a stream accepted is
/// remembered through its sender's floor once the stream is forgotten, and a floor above now
/// refuses that sender's messages until the clock passes it.
pub const FUTURE_SKEW_MS: u64 = 5_000;

/// Each sender key may hold at most this share (1/16) of the streams and of the bitmap: a
/// sender that opens more streams, or jumps its counters further, evicts its own state, not
/// anyone else's.
const SENDER_SHARE: usize = 16;

type FastHash = foldhash::fast::RandomState;

/// One sender key's streams and what their forgetting left behind.
#[derive(Debug, Default)]
struct Sender {
    /// Timestamps at or below this are refused: the newest message of every stream of this
    /// sender that was forgotten (so nothing it accepted is accepted again).
    floor_ms: u64,
    /// Bitmap words held by this sender's streams.
    words: usize,
    streams: HashMap<[u8; 8], Stream, FastHash>,
}

impl Sender {
    /// Forgets one stream, raising the floor past what it accepted; returns the words freed.
    fn forget(&mut self, id: &[u8; 8]) -> usize {
        let Some(s) = self.streams.remove(id) else {
            return 0;
        };
        self.floor_ms = self.floor_ms.max(s.newest_ms);
        self.words -= s.words.len();
        s.words.len()
    }

    /// The least recently used stream other than `keep`.
    fn least_recent(&self, keep: &[u8; 8]) -> Option<([u8; 8], u64)> {
        self.streams
            .iter()
            .filter(|(id, _)| *id != keep)
            .min_by_key(|(_, s)| s.last_use)
            .map(|(id, s)| (*id, s.last_use))
    }
}

/// Remembers which messages were accepted inside the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    /// Bitmap words all streams may hold together (`max_entries / 64`).
    max_words: usize,
    max_streams: usize,
    /// What one sender key may hold: `max_words` and `max_streams` over [`SENDER_SHARE`].
    sender_words: usize,
    sender_streams: usize,
    words: usize,
    stream_count: usize,
    senders: HashMap<KeyId, Sender, FastHash>,
    uses: u64,
    last_sweep_ms: u64,
}

impl ReplayGuard {
    /// A guard for a `window_ms` window that remembers at most `max_entries` messages (one bit
    /// each, plus 8 bytes per 64) across at most `max_streams` streams; each sender key at
    /// most a sixteenth of both.
    pub fn new(window_ms: u64, max_entries: usize, max_streams: usize) -> ReplayGuard {
        let max_words = (max_entries / WORD_BITS as usize).max(1);
        let max_streams = max_streams.max(1);
        ReplayGuard {
            window_ms,
            max_words,
            max_streams,
            sender_words: (max_words / SENDER_SHARE).max(1),
            sender_streams: (max_streams / SENDER_SHARE).max(1),
            words: 0,
            stream_count: 0,
            senders: HashMap::default(),
            uses: 0,
            last_sweep_ms: 0,
        }
    }

    /// Accepts message `counter` of stream `stream_id` from the sender key `sender`, stamped
    /// `ts_ms`, once; call only after the message authenticated, so a forger cannot fill the
    /// memory. Work per call is bounded by one sender's share (a sixteenth of the bounds),
    /// except when every share together overflows the bounds (then one scan of all streams).
    pub fn check(
        &mut self,
        sender: &KeyId,
        stream_id: [u8; 8],
        counter: u64,
        ts_ms: u64,
        now_ms: u64,
    ) -> Result<(), EnvelopeError> {
        let skew = ts_ms as i64 - now_ms as i64;
        if ts_ms > now_ms.saturating_add(FUTURE_SKEW_MS)
            || now_ms.saturating_sub(ts_ms) > self.window_ms
        {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        let oldest_fresh_ms = now_ms.saturating_sub(self.window_ms);
        if now_ms.saturating_sub(self.last_sweep_ms) >= self.window_ms / 4 {
            self.last_sweep_ms = now_ms;
            self.forget_idle(oldest_fresh_ms);
        }
        if self
            .senders
            .get(sender)
            .is_some_and(|s| s.floor_ms > 0 && ts_ms <= s.floor_ms)
        {
            return Err(EnvelopeError::OutsideWindow { skew_ms: skew });
        }
        let is_new = !self
            .senders
            .get(sender)
            .is_some_and(|s| s.streams.contains_key(&stream_id));
        if is_new {
            self.make_room_for_stream(sender, &stream_id);
        }
        self.uses += 1;
        let uses = self.uses;
        let sender_words = self.sender_words;
        let state = self.senders.entry(*sender).or_default();
        let stream = state
            .streams
            .entry(stream_id)
            .or_insert_with(|| Stream::new(counter));
        if is_new {
            self.stream_count += 1;
        }
        stream.last_use = uses;
        let before = stream.words.len();
        let accepted = stream.accept(counter, ts_ms, oldest_fresh_ms, sender_words);
        let after = stream.words.len();
        state.words = state.words + after - before;
        self.words = self.words + after - before;
        let id = || hex::encode(super::message_id(&stream_id, counter));
        match accepted {
            Err(Refusal::Seen) => return Err(EnvelopeError::Replay(id())),
            Err(Refusal::BelowWindow) => return Err(EnvelopeError::BeyondReplayWindow(id())),
            Ok(()) => {}
        }
        self.enforce_word_bounds(sender, &stream_id);
        Ok(())
    }

    /// Before `sender` starts stream `id`: its own least recently used stream goes if it is at
    /// its share, someone's if all streams together are at the bound.
    fn make_room_for_stream(&mut self, sender: &KeyId, id: &[u8; 8]) {
        if let Some(state) = self.senders.get_mut(sender) {
            if state.streams.len() >= self.sender_streams {
                if let Some((victim, _)) = state.least_recent(id) {
                    self.words -= state.forget(&victim);
                    self.stream_count -= 1;
                }
            }
        }
        if self.stream_count >= self.max_streams {
            self.evict_globally(&(*sender, *id));
        }
    }

    /// After an accept: `sender` back within its share of the bitmap (sliding its current
    /// stream first: that costs only very late messages of it, where forgetting a stream
    /// raises the sender's floor), then everyone within the whole budget.
    fn enforce_word_bounds(&mut self, sender: &KeyId, id: &[u8; 8]) {
        if let Some(state) = self.senders.get_mut(sender) {
            while state.words > self.sender_words {
                let slid = state.streams.get_mut(id).is_some_and(|s| {
                    let slide = s.words.len() > 1;
                    if slide {
                        s.pop_front();
                    }
                    slide
                });
                if slid {
                    state.words -= 1;
                    self.words -= 1;
                    continue;
                }
                let Some((victim, _)) = state.least_recent(id) else {
                    break;
                };
                self.words -= state.forget(&victim);
                self.stream_count -= 1;
            }
        }
        while self.words > self.max_words {
            if !self.evict_globally(&(*sender, *id)) {
                break;
            }
        }
    }

    /// Frees memory across senders: the least recently used stream other than `keep` goes,
    /// raising its own sender's floor. False when there is none.
    fn evict_globally(&mut self, keep: &(KeyId, [u8; 8])) -> bool {
        let victim = self
            .senders
            .iter()
            .filter_map(|(kid, s)| {
                s.streams
                    .iter()
                    .filter(|(id, _)| !(*kid == keep.0 && **id == keep.1))
                    .min_by_key(|(_, st)| st.last_use)
                    .map(|(id, st)| (*kid, *id, st.last_use))
            })
            .min_by_key(|(_, _, last_use)| *last_use);
        let Some((kid, id, _)) = victim else {
            return false;
        };
        if let Some(state) = self.senders.get_mut(&kid) {
            self.words -= state.forget(&id);
            self.stream_count -= 1;
        }
        true
    }

    /// Forgets streams with nothing accepted inside the window, and senders left with no
    /// stream and a floor the window check already covers.
    fn forget_idle(&mut self, oldest_fresh_ms: u64) {
        let (mut freed_words, mut freed_streams) = (0, 0);
        self.senders.retain(|_, state| {
            let mut floor = state.floor_ms;
            let mut freed = 0;
            state.streams.retain(|_, s| {
                let keep = s.newest_ms >= oldest_fresh_ms;
                if !keep {
                    floor = floor.max(s.newest_ms);
                    freed += s.words.len();
                    freed_streams += 1;
                }
                keep
            });
            state.floor_ms = floor;
            state.words -= freed;
            freed_words += freed;
            !state.streams.is_empty() || state.floor_ms >= oldest_fresh_ms
        });
        self.words -= freed_words;
        self.stream_count -= freed_streams;
    }

    /// Messages remembered as bitmap capacity (64 per word held).
    pub fn capacity_in_use(&self) -> usize {
        self.words * WORD_BITS as usize
    }

    pub fn streams(&self) -> usize {
        self.stream_count
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

    #[test]
    fn finding_07_future_stamped_streams_black_out_nobody_else() {
        let mut g = ReplayGuard::new(120_000, 1 << 23, 4096);
        let now = 1_000_000_000;
        let (rogue, honest) = (KeyId([1; 8]), KeyId([2; 8]));
        assert!(g.check(&honest, [9; 8], 0, now, now).is_ok());
        // Stamped two minutes ahead: refused outright.
        assert!(matches!(
            g.check(&rogue, [0; 8], 0, now + 119_000, now),
            Err(EnvelopeError::OutsideWindow { .. })
        ));
        // 5,000 fresh streams up to as far ahead as allowed: the rogue evicts its own streams
        // only (each raising its own floor, below its next stream's stamp).
        for i in 0..5_000u32 {
            let mut id = [0u8; 8];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let t = now + FUTURE_SKEW_MS - 5_000 + u64::from(i);
            assert!(g.check(&rogue, id, 0, t, now).is_ok(), "stream {i}");
        }
        assert!(g.streams() <= 4096 / 16 + 1, "{}", g.streams());
        // Everyone else is accepted straight after, and still refused on replay.
        assert!(g.check(&honest, [9; 8], 1, now + 1, now + 1).is_ok());
        assert!(g.check(&honest, [8; 8], 0, now + 1, now + 1).is_ok());
        assert!(matches!(
            g.check(&honest, [9; 8], 0, now, now + 2),
            Err(EnvelopeError::Replay(_))
        ));
        // The rogue's floor lies at most the allowed skew ahead: its own messages stamped
        // below it are refused, for those few seconds only.
        assert!(g.check(&rogue, [7; 8], 0, now + 2, now + 2).is_err());
        let later = now + FUTURE_SKEW_MS + 1;
        assert!(g.check(&rogue, [7; 8], 0, later, later).is_ok());
    }

    #[test]
    fn finding_07_a_counter_jump_takes_only_its_senders_share() {
        let mut g = ReplayGuard::new(120_000, 1 << 23, 4096);
        let now = 1_000_000_000;
        let (rogue, honest) = (KeyId([1; 8]), KeyId([2; 8]));
        for c in 0..10_000u64 {
            assert!(g.check(&honest, [9; 8], c, now, now).is_ok());
        }
        let honest_words = g.capacity_in_use();
        for jump in 1..=64u64 {
            let c = jump << 23;
            // Stamped later each time: its own evicted streams raise its floor, not ours.
            let t = now + 2 * jump;
            assert!(g.check(&rogue, [jump as u8; 8], 0, t, now).is_ok());
            assert!(g.check(&rogue, [jump as u8; 8], c, t + 1, now).is_ok());
            assert!(
                g.capacity_in_use() <= honest_words + (1 << 23) / 16,
                "{}",
                g.capacity_in_use()
            );
        }
        // The honest stream kept all it remembered: replays refused, new counters accepted.
        for c in [0, 5_000, 9_999] {
            assert!(matches!(
                g.check(&honest, [9; 8], c, now, now + 1),
                Err(EnvelopeError::Replay(_))
            ));
        }
        assert!(g.check(&honest, [9; 8], 10_000, now + 1, now + 1).is_ok());
    }
}
