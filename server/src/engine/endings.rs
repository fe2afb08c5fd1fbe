//! Who waits for an execution to end on this node: synchronous webhooks,
//! `?wait=true` runs and cancels. The store tells [`Endings`] as soon as it
//! committed an execution's end, so a waiter whose execution runs here
//! answers at once instead of polling the database. An execution run on
//! another node is still found by the waiter's (slower) polling.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Clone, Default)]
pub struct Endings {
    waiting: Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>>,
}

impl Endings {
    /// Be told when `id` ends here. Register before reading its state, so
    /// an end committed in between is not missed.
    pub fn watch(&self, id: Uuid) -> EndWatch {
        let (tell, told) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).entry(id).or_default().push(tell);
        EndWatch { endings: self.clone(), id, told }
    }

    /// `id`'s end is committed: wake whoever waits for it.
    pub fn ended(&self, id: Uuid) {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        for tell in waiting.into_iter().flatten() {
            let _ = tell.send(());
        }
    }
}

/// A registration: resolves when its execution ended on this node.
pub struct EndWatch {
    endings: Endings,
    id: Uuid,
    told: oneshot::Receiver<()>,
}

impl EndWatch {
    pub async fn ended(&mut self) {
        let _ = (&mut self.told).await;
    }
}

impl Drop for EndWatch {
    /// A waiter that gave up (or was told) leaves no sender behind.
    fn drop(&mut self) {
        self.told.close();
        let mut waiting = self.endings.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tells) = waiting.get_mut(&self.id) {
            tells.retain(|tell| !tell.is_closed());
            if tells.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_is_told_of_its_execution_s_end_and_leaves_nothing_behind() {
        let endings = Endings::default();
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (mut first, mut second) = (endings.watch(id), endings.watch(id));
        let gave_up = endings.watch(other);
        endings.ended(other);
        drop(gave_up);
        endings.ended(id);
        first.ended().await;
        second.ended().await;
        drop((first, second));
        let abandoned = endings.watch(Uuid::now_v7());
        drop(abandoned);
        assert!(endings.waiting.lock().unwrap().is_empty(), "no sender is kept for a waiter that is gone");
    }
}
