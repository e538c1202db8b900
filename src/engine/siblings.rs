//! The caches of this process that share one store and prefix, and the invalidations they
//! could not send yet.
//!
//! Two [`Cache`](crate::Cache)s built on one Redis server and prefix (the global one and one
//! a handler built, say) see the same keys, but each has its own near cache and its own
//! computations in flight. An invalidation made through one must hold for both from the
//! moment it returns, not from the moment Redis's tracking message reaches the other: so
//! each cache joins the [`Siblings`] of its store and prefix, and every change made through
//! one is told to all of them.
//!
//! The same group holds the invalidations that could not reach the store ([`Pending`]): each
//! is retried in the background until it lands, and until then no cache of the group serves
//! what it names.

use crate::key::glob;
pub(crate) use crate::request::Target;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

/// What a member of a group does when a key (or every key matching a glob) changes.
pub(crate) trait Member: Send + Sync {
    /// Before the store is told: computations in flight of what `target` names no longer
    /// hand their values to callers who arrive from now on.
    fn invalidating(&self, target: &str, glob: bool);
    /// After the store was told (or could not be): process memory drops what `target` names.
    fn changed(&self, target: &str, glob: bool);
    /// [`invalidating`](Self::invalidating) of each of `keys` (a tag's page).
    fn invalidating_keys(&self, keys: &[&str]) {
        for key in keys {
            self.invalidating(key, false);
        }
    }
    /// [`changed`](Self::changed) of each of `keys`.
    fn changed_keys(&self, keys: &[&str]) {
        for key in keys {
            self.changed(key, false);
        }
    }
}

/// The caches of one store and prefix in this process (each an `M`: the engine's core).
pub(crate) struct Siblings<M> {
    members: RwLock<Vec<Weak<M>>>,
    pub(crate) pending: Pending,
}

/// Every group, by store and prefix, type-erased (one member type per build); a group goes
/// with its last cache.
static GROUPS: Lazy<Mutex<HashMap<String, Weak<dyn std::any::Any + Send + Sync>>>> =
    Lazy::new(Default::default);

impl<M: Member + 'static> Siblings<M> {
    /// The group of `id` (a store's identity and a prefix), made if there is none; `all` is
    /// the glob that matches every key under the prefix.
    pub(crate) fn join(id: String, all: String) -> Arc<Siblings<M>> {
        let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|_, g| g.strong_count() > 0);
        if let Some(group) = groups.get(&id).and_then(Weak::upgrade) {
            if let Ok(group) = group.downcast::<Siblings<M>>() {
                return group;
            }
        }
        let group = Arc::new(Siblings {
            members: RwLock::new(Vec::new()),
            pending: Pending::new(all),
        });
        let erased: Arc<dyn std::any::Any + Send + Sync> = group.clone();
        groups.insert(id, Arc::downgrade(&erased));
        group
    }

    /// A group of its own, for a store no other cache can share (the embedded store).
    pub(crate) fn alone(all: String) -> Arc<Siblings<M>> {
        Arc::new(Siblings {
            members: RwLock::new(Vec::new()),
            pending: Pending::new(all),
        })
    }

    pub(crate) fn add(&self, member: Weak<M>) {
        let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
    }

    fn each(&self, f: impl Fn(&M)) {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        for member in members.iter().filter_map(Weak::upgrade) {
            f(&member);
        }
    }

    /// The live caches of the group, oldest first.
    pub(crate) fn members(&self) -> Vec<Arc<M>> {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        members.iter().filter_map(Weak::upgrade).collect()
    }

    /// See [`Member::invalidating`]: told to every cache of the group.
    pub(crate) fn invalidating(&self, target: &str, glob: bool) {
        self.each(|m| m.invalidating(target, glob));
    }

    /// See [`Member::changed`]: told to every cache of the group.
    pub(crate) fn changed(&self, target: &str, glob: bool) {
        self.each(|m| m.changed(target, glob));
    }

    /// See [`Member::invalidating_keys`].
    pub(crate) fn invalidating_keys(&self, keys: &[&str]) {
        self.each(|m| m.invalidating_keys(keys));
    }

    /// See [`Member::changed_keys`].
    pub(crate) fn changed_keys(&self, keys: &[&str]) {
        self.each(|m| m.changed_keys(keys));
    }

    /// How many caches of the group are alive.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        members.iter().filter(|m| m.strong_count() > 0).count()
    }
}

/// Most invalidations a group queues; past it, the queue becomes one invalidation of every
/// key under the prefix (counted and logged): bounded memory, and still no key served that
/// an invalidation named.
pub(crate) const MAX_PENDING: usize = 10_000;

/// The invalidations of a group that have not landed yet, each with the number of its latest
/// queuing (a target queued again while queued keeps one entry: the newest).
pub(crate) struct Pending {
    /// How many are queued: read on every cached call, so that the common case (none) costs
    /// one load.
    count: AtomicUsize,
    /// Read by every cached call while something is queued (an outage), written by the few
    /// invalidations: a read-write lock, and a look-up by key rather than a scan.
    state: RwLock<PendingState>,
    /// The glob of every key under the prefix: what an overflowing queue becomes.
    all: String,
}

/// The queued targets by kind, each with its number and when it was first queued.
#[derive(Default)]
struct PendingState {
    keys: HashMap<String, (u64, Instant)>,
    patterns: HashMap<String, (u64, Instant)>,
    tags: HashMap<String, (u64, Instant)>,
    next: u64,
    /// Whether a task is retrying them (it ends once none is left).
    worker: bool,
}

impl PendingState {
    fn len(&self) -> usize {
        self.keys.len() + self.patterns.len() + self.tags.len()
    }

    fn map(&mut self, target: &Target) -> (&mut HashMap<String, (u64, Instant)>, String) {
        match target {
            Target::Key(k) => (&mut self.keys, k.clone()),
            Target::Pattern(p) => (&mut self.patterns, p.clone()),
            Target::Tag(t) => (&mut self.tags, t.clone()),
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.keys
            .values()
            .chain(self.patterns.values())
            .chain(self.tags.values())
            .map(|(_, at)| *at)
            .min()
    }
}

/// What [`Pending::queue`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued; start a worker if this is true (none was running).
    Yes { start_worker: bool },
    /// The queue was full: it now holds one invalidation of every key under the prefix.
    Overflowed { start_worker: bool, dropped: usize },
}

impl Pending {
    fn new(all: String) -> Pending {
        Pending {
            count: AtomicUsize::new(0),
            state: RwLock::new(PendingState::default()),
            all,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PendingState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PendingState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// How many invalidations are waiting to land.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// The number the next queuing will get: a write that takes it before it is sent may
    /// supersede only what was queued before (see [`written`](Self::written)).
    pub(crate) fn mark(&self) -> u64 {
        self.read().next
    }

    pub(crate) fn queue(&self, target: Target) -> Queued {
        let mut st = self.write();
        let start_worker = !std::mem::replace(&mut st.worker, true);
        st.next += 1;
        let seq = st.next;
        let now = Instant::now();
        let mut dropped = 0;
        let (map, name) = st.map(&target);
        let known = map.contains_key(&name);
        if !known && st.len() >= MAX_PENDING {
            dropped = st.len();
            let oldest = st.oldest().unwrap_or(now);
            st.keys.clear();
            st.patterns.clear();
            st.tags.clear();
            st.patterns.insert(self.all.clone(), (seq, oldest));
        } else {
            let (map, name) = st.map(&target);
            let at = map.get(&name).map_or(now, |(_, at)| *at);
            map.insert(name, (seq, at));
        }
        self.count.store(st.len(), Ordering::Release);
        if dropped > 0 {
            Queued::Overflowed {
                start_worker,
                dropped,
            }
        } else {
            Queued::Yes { start_worker }
        }
    }

    /// A write of `key`, which took `mark` before it was sent, landed: a queued invalidation
    /// of that exact key queued before the mark is superseded (its late landing would delete
    /// the new value); one queued after stays.
    pub(crate) fn written(&self, key: &str, mark: u64) {
        if self.len() == 0 {
            return;
        }
        let mut st = self.write();
        if st.keys.get(key).is_some_and(|(seq, _)| *seq <= mark) {
            st.keys.remove(key);
        }
        self.count.store(st.len(), Ordering::Release);
    }

    /// What to retry now, with each entry's number, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<(Target, u64)> {
        let st = self.read();
        let mut all: Vec<(Target, u64)> = st
            .keys
            .iter()
            .map(|(k, (seq, _))| (Target::Key(k.clone()), *seq))
            .chain(
                st.patterns
                    .iter()
                    .map(|(p, (seq, _))| (Target::Pattern(p.clone()), *seq)),
            )
            .chain(
                st.tags
                    .iter()
                    .map(|(t, (seq, _))| (Target::Tag(t.clone()), *seq)),
            )
            .collect();
        all.sort_by_key(|(_, seq)| *seq);
        all
    }

    /// How long the oldest queued invalidation has waited.
    pub(crate) fn oldest(&self) -> Option<std::time::Duration> {
        self.read().oldest().map(|at| at.elapsed())
    }

    /// `target`, queued as number `seq`, landed: it goes unless queued again since.
    pub(crate) fn landed(&self, target: &Target, seq: u64) {
        let mut st = self.write();
        let (map, name) = st.map(target);
        if map.get(&name).is_some_and(|(s, _)| *s == seq) {
            map.remove(&name);
        }
        self.count.store(st.len(), Ordering::Release);
    }

    /// The worker stops unless something is queued; true when it must go on.
    pub(crate) fn worker_done(&self) -> bool {
        let mut st = self.write();
        if st.len() == 0 {
            st.worker = false;
            false
        } else {
            true
        }
    }

    /// Whether a queued invalidation names `key`, or one of `tags` (tag-set keys) a call
    /// records it under: such a call must not be served from any tier.
    #[inline]
    pub(crate) fn holds_back(&self, key: &str, tags: &[String]) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.names(key, tags)
    }

    #[inline(never)]
    fn names(&self, key: &str, tags: &[String]) -> bool {
        let st = self.read();
        st.keys.contains_key(key)
            || tags.iter().any(|t| st.tags.contains_key(t))
            || st
                .patterns
                .keys()
                .any(|p| glob::matches(p.as_bytes(), key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_invalidation_holds_back_what_it_names_until_it_lands() {
        let p = Pending::new("app:*".into());
        assert!(!p.holds_back("app:k", &[]));
        assert_eq!(
            p.queue(Target::Key("app:k".into())),
            Queued::Yes { start_worker: true }
        );
        assert_eq!(
            p.queue(Target::Pattern("app:w:*".into())),
            Queued::Yes {
                start_worker: false
            }
        );
        p.queue(Target::Tag("app:[tag]:u".into()));
        assert!(p.holds_back("app:k", &[]));
        assert!(p.holds_back("app:w:1", &[]));
        assert!(p.holds_back("app:x", &["app:[tag]:u".into()]));
        assert!(!p.holds_back("app:x", &["app:[tag]:v".into()]));
        assert!(!p.holds_back("app:kk", &[]));
        let batch = p.snapshot();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[0].0, Target::Key("app:k".into()), "oldest first");
        // Queued again while being retried: the retry that began before does not remove it.
        p.queue(Target::Key("app:k".into()));
        for (t, seq) in &batch {
            p.landed(t, *seq);
        }
        assert_eq!(p.len(), 1);
        assert!(p.holds_back("app:k", &[]));
        assert!(p.worker_done(), "the worker goes on while one is queued");
        let mark = p.mark();
        p.queue(Target::Key("app:later".into()));
        p.written("app:k", mark);
        p.written("app:later", mark);
        assert_eq!(
            p.len(),
            1,
            "a write supersedes what was queued before it, not after"
        );
        for (t, seq) in p.snapshot() {
            p.landed(&t, seq);
        }
        assert!(!p.worker_done());
    }

    #[test]
    fn an_overflowing_queue_becomes_one_invalidation_of_everything() {
        let p = Pending::new("app:*".into());
        for i in 0..MAX_PENDING {
            p.queue(Target::Key(format!("app:{i}")));
        }
        assert_eq!(p.len(), MAX_PENDING);
        // Queued again: still one entry.
        p.queue(Target::Key("app:1".into()));
        assert_eq!(p.len(), MAX_PENDING);
        let q = p.queue(Target::Key("app:new".into()));
        assert_eq!(
            q,
            Queued::Overflowed {
                start_worker: false,
                dropped: MAX_PENDING
            }
        );
        assert_eq!(p.len(), 1);
        assert!(p.holds_back("app:anything", &[]));
    }

    struct Probe(Mutex<Vec<String>>);

    impl Member for Probe {
        fn invalidating(&self, target: &str, _: bool) {
            self.0.lock().unwrap().push(format!("before {target}"));
        }
        fn changed(&self, target: &str, _: bool) {
            self.0.lock().unwrap().push(format!("after {target}"));
        }
    }

    #[test]
    fn a_group_tells_every_live_member_and_goes_with_the_last() {
        let id = "test-store|prefix".to_string();
        let a = Siblings::<Probe>::join(id.clone(), "p:*".into());
        let b = Siblings::<Probe>::join(id.clone(), "p:*".into());
        assert!(Arc::ptr_eq(&a, &b));
        let one: Arc<Probe> = Arc::new(Probe(Mutex::default()));
        let two: Arc<Probe> = Arc::new(Probe(Mutex::default()));
        a.add(Arc::downgrade(&one));
        b.add(Arc::downgrade(&two));
        a.invalidating("p:k", false);
        b.changed("p:k", false);
        assert_eq!(*one.0.lock().unwrap(), ["before p:k", "after p:k"]);
        assert_eq!(*two.0.lock().unwrap(), ["before p:k", "after p:k"]);
        drop(two);
        assert_eq!(a.len(), 1);
        drop((a, b));
        let c = Siblings::<Probe>::join(id, "p:*".into());
        assert_eq!(c.len(), 0, "a new group once the old one went");
    }
}
