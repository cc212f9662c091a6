//! The retention ring: the last `output.retain` verdict and status lines, so a client that
//! resumes with `subscribe` gets what it missed. Entries are numbered by a running index that
//! never repeats, so a resuming client's read position survives the ring moving on.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::wire::SeqRange;

/// One retained line.
pub(super) struct Entry {
    /// `Some(seq)` for a verdict; `None` for a status event.
    pub verdict_seq: Option<u64>,
    /// The last verdict `seq` emitted when this line was (its own, for a verdict).
    pub follows: u64,
    pub line: Arc<str>,
}

impl Entry {
    /// Whether this line comes after verdict `from_seq` in the stream.
    fn after(&self, from_seq: u64) -> bool {
        match self.verdict_seq {
            Some(seq) => seq > from_seq,
            None => self.follows >= from_seq,
        }
    }
}

pub(super) struct Ring {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// The running index of `entries[0]`.
    first_index: u64,
    /// The highest verdict `seq` that has left the ring (0: none yet).
    evicted_through: u64,
}

/// Where a resumed stream starts: the verdicts no longer retained, and the index of the first
/// retained line after the resume point.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Resume {
    pub missing: Option<SeqRange>,
    pub start: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            entries: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            first_index: 0,
            evicted_through: 0,
        }
    }

    pub fn push(&mut self, entry: Entry) {
        if self.entries.len() == self.capacity
            && let Some(old) = self.entries.pop_front()
        {
            self.first_index += 1;
            if let Some(seq) = old.verdict_seq {
                self.evicted_through = seq;
            }
        }
        self.entries.push_back(entry);
    }

    /// The verdict seqs still retained; `None` when no verdict is.
    pub fn retained(&self) -> Option<SeqRange> {
        let first = self.entries.iter().find_map(|e| e.verdict_seq)?;
        let last = self.entries.iter().rev().find_map(|e| e.verdict_seq)?;
        Some(SeqRange {
            from_seq: first,
            to_seq: last,
        })
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The index the next line pushed will have.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let i = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.entries.get(i)
    }

    /// The resume point right after verdict `from_seq`.
    pub fn resume(&self, from_seq: u64) -> Resume {
        let missing = (self.evicted_through > from_seq).then_some(SeqRange {
            from_seq: from_seq + 1,
            to_seq: self.evicted_through,
        });
        let skip = self.entries.partition_point(|e| !e.after(from_seq));
        Resume {
            missing,
            start: self.first_index + skip as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(seq: u64) -> Entry {
        Entry {
            verdict_seq: Some(seq),
            follows: seq,
            line: Arc::from(format!("v{seq}")),
        }
    }

    fn status(follows: u64) -> Entry {
        Entry {
            verdict_seq: None,
            follows,
            line: Arc::from(format!("s{follows}")),
        }
    }

    fn lines_from(ring: &Ring, start: u64) -> Vec<String> {
        (start..ring.end_index())
            .map(|i| ring.get(i).unwrap().line.to_string())
            .collect()
    }

    #[test]
    fn resume_names_what_is_gone_and_replays_the_rest() {
        let mut ring = Ring::new(4);
        assert_eq!(ring.retained(), None);
        for e in [
            status(0),
            verdict(1),
            verdict(2),
            status(2),
            verdict(3),
            verdict(4),
        ] {
            ring.push(e);
        }
        // s0 and v1 are gone.
        assert_eq!(
            ring.retained(),
            Some(SeqRange {
                from_seq: 2,
                to_seq: 4
            })
        );
        let r = ring.resume(0);
        assert_eq!(
            r.missing,
            Some(SeqRange {
                from_seq: 1,
                to_seq: 1
            })
        );
        assert_eq!(lines_from(&ring, r.start), ["v2", "s2", "v3", "v4"]);
        let r = ring.resume(2);
        assert_eq!(r.missing, None);
        assert_eq!(lines_from(&ring, r.start), ["s2", "v3", "v4"]);
        let r = ring.resume(4);
        assert_eq!(r.start, ring.end_index());
        assert_eq!(ring.first_index(), 2);
        assert!(ring.get(1).is_none());
    }
}
