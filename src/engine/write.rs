//! Writing what a computation produced: the value, vetted by the call's conditions,
//! lands only while the caller's lease (or the bytes a refresh read) is still in place, so
//! that an invalidation during the computation keeps it out; and the key's tag entries,
//! recorded before the lease and again before the write.

use super::*;

/// The outcome of a computation, as the core sees it.
pub(crate) enum Computed {
    /// The value's stored form.
    Value(Vec<u8>),
    /// The computation returned an error: nothing to store or share.
    Failed,
    /// A value that cannot be stored (it would not read back equal).
    Unstorable(Error),
    /// A value the call chose not to store ([`Control::store_if`], [`Control::ttl_from`]):
    /// returned and shared, never written.
    Declined(Vec<u8>),
}

impl Computed {
    pub(crate) fn of<T: CacheValue, E>(out: &Result<T, E>, format: codec::Format) -> Computed {
        match out {
            Ok(v) => match codec::encode_checked(v, format) {
                Ok(bytes) => Computed::Value(bytes),
                Err(e) => Computed::Unstorable(e),
            },
            Err(_) => Computed::Failed,
        }
    }

    /// The call's conditions on the value: declined, or stored with the TTL that
    /// [`Control::ttl_from`] chose. Not generic: the value comes as `&dyn Any`.
    pub(super) fn vetted(
        self,
        core: &Core,
        call: &Call<'_>,
        value: Option<&dyn Any>,
        ttl: &mut Option<Duration>,
    ) -> Computed {
        let c = &call.control;
        if c.store_if.is_none() && c.ttl_from.is_none() {
            return self;
        }
        let (Computed::Value(bytes), Some(value)) = (&self, value) else {
            return self;
        };
        let keep = c.store_if.map(|f| f(value));
        let chosen = c.ttl_from.map(|f| f(value));
        if keep == Some(None) || chosen == Some(None) {
            let e = Error::config(format!(
                "the store_if or ttl_from callback of {} takes another type than the value's",
                call.name
            ));
            core.report_fault("cache option", call.template, &call.key, &e);
            call.served.fault();
            return Computed::Declined(bytes.clone());
        }
        if keep == Some(Some(false)) {
            call.debug(format_args!("Not caching {}: store_if said no", call.key));
            Counters::add(&core.counters.declined, 1);
            return Computed::Declined(bytes.clone());
        }
        if let Some(Some(d)) = chosen {
            if d.is_zero() {
                call.debug(format_args!(
                    "Not caching {}: ttl_from chose a zero TTL",
                    call.key
                ));
                Counters::add(&core.counters.declined, 1);
                return Computed::Declined(bytes.clone());
            }
            *ttl = Some(d);
            // The value carries the end of its life, so that no sliding read extends it.
            let deadline = crate::store::unix_ms()
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            return Computed::Value(codec::with_deadline(bytes, deadline));
        }
        self
    }
}

impl Core {
    /// A computation's outcome, its value encoded in the cache's format.
    pub(crate) fn outcome<T: CacheValue, E>(&self, out: &Result<T, E>) -> Computed {
        // `Config::max_value_bytes`: a value over the bound is unstorable on every path.
        self.bounded(Computed::of(out, self.config.format))
    }

    /// Stores a leader's value (unless an invalidation ran while it was computed) and hands
    /// it to the followers; or, for a failed computation, gives the lease back and releases
    /// the followers. The `Err` only comes in strict mode.
    pub(crate) async fn finish(
        &self,
        mode: Mode,
        call: &Call<'_>,
        ticket: Lead,
        outcome: Computed,
    ) -> Result<()> {
        let Lead {
            mut leader,
            lease,
            guard,
            computed_from,
            restore,
            ttl,
            ..
        } = ticket;
        let outcome = self.bounded(outcome);
        let store_ttl = call.store_ttl_for(ttl);
        let stored = match outcome {
            Computed::Value(stored) if self.is_enabled() => stored,
            // Shared with this process's followers, never written; the lease goes back now.
            Computed::Value(stored) | Computed::Declined(stored) => {
                leader.share(SharedValue {
                    stored: stored.into(),
                    fresh_as_of: computed_from,
                    written: false,
                });
                let released = match &lease {
                    Lease::Held(token) => self.backend.delete_if(mode, &call.key, token).await,
                    _ => Ok(false),
                };
                match (guard, released) {
                    (Some(guard), Ok(_)) => guard.finish(),
                    // Dropped unfinished: the keeper gives the lease back, retrying.
                    (_, Err(e)) => self.report_fault("lease release", call.template, &call.key, &e),
                    (None, Ok(_)) => {}
                }
                return Ok(());
            }
            Computed::Failed | Computed::Unstorable(_) => {
                if let Computed::Unstorable(e) = &outcome {
                    Counters::add(&self.counters.unstorable, 1);
                    if self.rare.allow("unstorable", call.template).is_some() {
                        log::warn!(target: "cacheable", "not caching the value computed for {} in {}: {}", call.key, call.name, chain(e));
                    }
                }
                let failed = matches!(outcome, Computed::Failed);
                let mut put_back = None;
                // Leave a failure marker in place of the lease, so that waiters elsewhere
                // compute at once instead of sitting out its TTL or queueing for it.
                let released = match (&lease, restore) {
                    // Stale-if-error: the value the lease took over goes back for what is
                    // left of its window, unless an invalidation took the lease meanwhile.
                    (Lease::Held(token), Some(old))
                        if failed && old.until > Instant::now() + Duration::from_millis(1) =>
                    {
                        let left = old.until - Instant::now();
                        // With a fail-safe throttle, stamped with the time before which
                        // readers answer with it rather than ask the source again.
                        let throttle = call.fresh.fail_safe_throttle;
                        let bytes = if throttle.is_zero() {
                            std::borrow::Cow::Borrowed(&old.bytes[..])
                        } else {
                            let throttle = u64::try_from(throttle.as_millis()).unwrap_or(u64::MAX);
                            let retry = crate::store::unix_ms().saturating_add(throttle);
                            std::borrow::Cow::Owned(codec::with_retry(&old.bytes, retry))
                        };
                        let restored = self
                            .backend
                            .set_if(mode, &call.key, token, &bytes, left)
                            .await;
                        // Put back under the lease (no invalidation came): the followers
                        // that share failures may answer with it.
                        if matches!(restored, Ok(true)) {
                            put_back = Some(old);
                        }
                        restored
                    }
                    // Nothing failed: the lease goes, and waiters elsewhere compute (one
                    // takes the key over) rather than share a failure.
                    (Lease::Held(token), _) if !failed => {
                        self.backend.delete_if(mode, &call.key, token).await
                    }
                    (Lease::Held(token), _) => {
                        let marker = failed_marker(token);
                        self.backend
                            .set_if(mode, &call.key, token, &marker, FAILED_TTL)
                            .await
                    }
                    (_, _) => Ok(false),
                };
                if failed {
                    leader.fail(put_back);
                } else {
                    leader.unshared();
                }
                match (guard, released) {
                    (Some(guard), Ok(_)) => guard.finish(),
                    // Dropped unfinished: the keeper gives the lease back, retrying.
                    (_, Err(e)) => self.report_fault("lease release", call.template, &call.key, &e),
                    (None, Ok(_)) => {}
                }
                return Ok(());
            }
        };
        // Followers may take a value written under the lease whatever happened meanwhile
        // (the compare-and-set proved no invalidation ran); any other value, only if no
        // invalidation came between the start of the computation and their arrival.
        let unverified = |stored: Vec<u8>| SharedValue {
            stored: stored.into(),
            fresh_as_of: computed_from,
            written: false,
        };
        // Not written while an invalidation that names the key is queued (the lease it could
        // not delete would not stop the write), nor before the key is recorded in its tags
        // again: a tag invalidation that listed the entry recorded before the lease, and
        // deleted the key before the lease was taken, forgets that entry after; recorded anew
        // (a new score), the entry outlives the forgetting, and covers a TTL that `ttl_from`
        // chose longer than the call's.
        if matches!(lease, Lease::Held(_) | Lease::Off) {
            let covered = if self.held_back(&call.key, &call.fresh.tags) {
                Ok(false)
            } else {
                self.index(mode, call, store_ttl).await
            };
            if !matches!(covered, Ok(true)) {
                leader.share(unverified(stored));
                // Dropped unfinished: the keeper gives the lease back.
                drop(guard);
                return covered.map(drop);
            }
        }
        let checked = !self.config.unchecked_lease_writes;
        let written = match &lease {
            Lease::Held(token) if checked => {
                self.backend
                    .set_if(mode, &call.key, token, &stored, store_ttl)
                    .await
            }
            Lease::Held(_) | Lease::Off => self
                .backend
                .set(mode, &call.key, &stored, store_ttl)
                .await
                .map(|()| true),
            Lease::Unavailable | Lease::Uncached => {
                leader.share(unverified(stored));
                return Ok(());
            }
        };
        // The lease is the holder's to hand back unless the write settled it: after a failed
        // write, dropping the guard has the keeper delete it (deletions pass an open breaker).
        if let (Some(guard), Ok(_)) = (guard, &written) {
            guard.finish();
        }
        if written.is_ok() {
            self.changed(&call.key, false);
        }
        match written {
            Ok(true) => {
                Counters::add(&self.counters.sets, 1);
                telemetry::sets(call.template, 1);
                call.debug(format_args!(
                    "Cached result for {} (TTL: {})",
                    call.key,
                    format_ttl(ttl.unwrap_or(call.ttl))
                ));
                // Followers put a verified value in their near cache for the call's TTL:
                // not for one `ttl_from` chose, which they do not know.
                let verified = matches!(lease, Lease::Held(_)) && checked && ttl.is_none();
                // Even a value the compare-and-set let in is only as fresh as the data it was
                // computed from: an invalidation that began meanwhile (counted, its deletion
                // still to come) turns away the followers that arrived after it.
                leader.share(SharedValue {
                    stored: stored.into(),
                    fresh_as_of: computed_from,
                    written: verified,
                });
            }
            Ok(false) => {
                // The lease is gone: an invalidation ran during the computation, so the value
                // may be stale. The caller gets it (its call began before the invalidation);
                // the store and the followers do not: they start over.
                call.debug(format_args!(
                    "Not cached: {} was invalidated during the computation in {}",
                    call.key, call.name
                ));
            }
            Err(e) => {
                self.fault(call, "cache write", e)?;
                leader.share(unverified(stored));
            }
        }
        Ok(())
    }

    /// A refresh's new value is not to be stored ([`Computed::Declined`]): the `old` bytes it
    /// was to replace go too, only while the key still holds them. The store's error, for
    /// the caller to handle.
    pub(super) async fn delete_declined(
        &self,
        mode: Mode,
        call: &Call<'_>,
        old: &[u8],
    ) -> Result<()> {
        if self.backend.delete_if(mode, &call.key, old).await? {
            self.changed(&call.key, false);
            call.debug(format_args!(
                "Deleted {}: its refreshed value is not to be stored",
                call.key
            ));
        }
        Ok(())
    }

    /// Ends a call that computed: stores a leader's or a refresh's value (see
    /// [`finish`](Self::finish), [`finish_refresh`](Self::finish_refresh),
    /// [`finish_forced`](Self::finish_forced)). One non-generic step for every cached
    /// function, whatever it began as.
    pub(crate) async fn settle(
        &self,
        mode: Mode,
        call: &Call<'_>,
        begun: Begin,
        outcome: Option<Computed>,
    ) -> Result<()> {
        match (begun, outcome) {
            (Begin::Lead(ticket), Some(outcome)) => self.finish(mode, call, ticket, outcome).await,
            (Begin::Force(old, ttl), Some(outcome)) => {
                self.finish_forced(mode, call, &old, outcome, ttl).await
            }
            (Begin::Refresh(old, refresh), Some(outcome)) => {
                self.finish_refresh(mode, call, refresh, &old, &outcome)
                    .await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A forced refresh ([`Control::refresh`]): puts the new value in place of the `old`
    /// bytes, only while the key still holds them: an invalidation during the computation
    /// deletes them, and the write does not land (as a lease would have made it). A value
    /// declined by the call's conditions takes the old one out the same way; a failed
    /// computation leaves it. Unlike an [early refresh](Self::finish_refresh), it takes
    /// no lock: every forced call computes, and the last write wins.
    pub(crate) async fn finish_forced(
        &self,
        mode: Mode,
        call: &Call<'_>,
        old: &[u8],
        outcome: Computed,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let store_ttl = call.store_ttl_for(ttl);
        let stored = match outcome {
            Computed::Value(stored) if self.is_enabled() => stored,
            Computed::Declined(_) => {
                if let Err(e) = self.delete_declined(mode, call, old).await {
                    self.fault(call, "cache write", e)?;
                }
                return Ok(());
            }
            Computed::Unstorable(e) => {
                Counters::add(&self.counters.unstorable, 1);
                if self.rare.allow("unstorable", call.template).is_some() {
                    log::warn!(target: "cacheable", "not caching the value computed for {} in {}: {}", call.key, call.name, chain(&e));
                }
                return Ok(());
            }
            Computed::Value(_) | Computed::Failed => return Ok(()),
        };
        // Not while an invalidation that names the key is queued. The tag entries first, as
        // before a lease: they outlive the new value. A store that failed here (reported)
        // keeps the value out: a tag would not find it.
        if self.held_back(&call.key, &call.fresh.tags) || !self.index(mode, call, store_ttl).await?
        {
            return Ok(());
        }
        match self
            .backend
            .set_if(mode, &call.key, old, &stored, store_ttl)
            .await
        {
            Ok(true) => {
                self.changed(&call.key, false);
                Counters::add(&self.counters.sets, 1);
                telemetry::sets(call.template, 1);
                call.debug(format_args!(
                    "Refreshed {} (TTL: {})",
                    call.key,
                    format_ttl(ttl.unwrap_or(call.ttl))
                ));
            }
            Ok(false) => call.debug(format_args!(
                "Not cached: {} changed or was invalidated during the refresh in {}",
                call.key, call.name
            )),
            Err(e) => self.fault(call, "cache write", e)?,
        }
        Ok(())
    }

    /// Records the key in its tag sets for a value that lives `store_ttl` in the store:
    /// before the lease is asked for, so that a tag invalidation that begins once the lease
    /// is held finds the key and deletes the lease with it (the holder's compare-and-set
    /// then fails, as after a key invalidation); again right before the value is written
    /// (see [`finish`](Self::finish)), and before a sliding read pushes the key's expiry. An entry lives as long as the value can: the lease wait, the longest a
    /// lease is held, then `store_ttl` (an entry already there with a later expiry keeps
    /// it). False (reported) when the store failed: the value must then not be written, nor
    /// its expiry pushed, since a tag invalidation would not find it.
    pub(super) async fn index(
        &self,
        mode: Mode,
        call: &Call<'_>,
        store_ttl: Duration,
    ) -> Result<bool> {
        if call.fresh.tags.is_empty() {
            return Ok(true);
        }
        let c = &self.config;
        let life = c.lease_wait + c.lease_ttl.saturating_mul(MAX_HOLD) + store_ttl;
        for set in &call.fresh.tags {
            if let Err(e) = self.backend.tag_add(mode, set, &call.key, life).await {
                self.fault(call, "cache tag", e)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A stored value over the bound: counted as an error and logged (a line a second per
    /// template), so that the caller computes and replaces it.
    pub(super) fn oversized(&self, call: &Call<'_>, bytes: &[u8]) -> bool {
        match self.config.max_value_bytes {
            Some(max) if bytes.len() > max => {
                let e = Error::new(
                    ErrorKind::Deserialize,
                    format!(
                        "the stored value has {} bytes, over max_value_bytes ({max})",
                        bytes.len()
                    ),
                );
                self.report_fault("oversized value", call.template, &call.key, &e);
                true
            }
            _ => false,
        }
    }

    /// A computed value whose stored form is over the bound is not stored: the caller still
    /// gets it, and it is counted and logged as unstorable.
    pub(super) fn bounded(&self, outcome: Computed) -> Computed {
        match (outcome, self.config.max_value_bytes) {
            (Computed::Value(bytes), Some(max)) if bytes.len() > max => {
                Computed::Unstorable(Error::new(
                    ErrorKind::Serialize,
                    format!(
                        "its stored form has {} bytes, over max_value_bytes ({max})",
                        bytes.len()
                    ),
                ))
            }
            (outcome, _) => outcome,
        }
    }
}
