//! The scorer in force, shared by the source (which hands a snapshot to each frame it takes)
//! and the SIGHUP handler (which swaps it).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::inspect::Scorer;

/// The slot as the pipeline's threads share it.
pub type SharedScorer = Arc<ScorerSlot>;

/// The scorer in force and the `seq` of the last frame taken, under one lock: each frame is
/// scored by the scorer in force when it was taken, so a swap lands exactly between two frames
/// and [`ScorerSlot::swap`] says which.
pub struct ScorerSlot(Mutex<(u64, Arc<Scorer>)>);

/// The scorer in force at start, ready for swapping.
pub fn shared_scorer(scorer: Scorer) -> SharedScorer {
    Arc::new(ScorerSlot(Mutex::new((0, Arc::new(scorer)))))
}

impl ScorerSlot {
    fn lock(&self) -> MutexGuard<'_, (u64, Arc<Scorer>)> {
        // Nothing panics while holding the lock; a poisoned lock still holds a valid pair.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a frame: its `seq` and the scorer it will be scored with.
    pub(super) fn admit(&self) -> (u64, Arc<Scorer>) {
        let mut slot = self.lock();
        slot.0 += 1;
        (slot.0, slot.1.clone())
    }

    /// The scorer in force now.
    pub fn current(&self) -> Arc<Scorer> {
        self.lock().1.clone()
    }

    /// The `seq` of the last frame taken and the scorer in force.
    pub(super) fn position(&self) -> (u64, Arc<Scorer>) {
        let slot = self.lock();
        (slot.0, slot.1.clone())
    }

    /// Puts `new` in force from the next frame taken; returns the `seq` of the last frame
    /// scored with the previous scorer, and that scorer.
    pub(super) fn swap(&self, new: Arc<Scorer>) -> (u64, Arc<Scorer>) {
        let mut slot = self.lock();
        let previous = std::mem::replace(&mut slot.1, new);
        (slot.0, previous)
    }
}
