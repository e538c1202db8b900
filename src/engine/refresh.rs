//! Refreshing before the expiry (XFetch) and while stale (stale-while-revalidate): one
//! caller across all processes takes the key's refresh lock and computes, while everyone
//! else reads the current value.

use super::*;

/// Most key templates whose computation time early refresh remembers; past it, one is
/// forgotten for each new one (it is learnt again on its next computation).
pub(super) const MAX_DELTAS: usize = 4096;

/// An early refresh in progress: the store-wide lock that elects one refresher per key
/// (a side key, so the current value stays readable), and what the write checks.
pub(crate) struct Refresh {
    pub(super) lock: String,
    pub(super) token: Vec<u8>,
    /// The value's time to live in the store when read, and when it was read.
    pub(super) left: Duration,
    pub(super) read_at: Instant,
    /// The TTL [`Control::ttl_from`] chose for the new value, in place of the call's.
    pub(super) ttl: Option<Duration>,
}

/// Rounding allowed between the `PTTL` an early refresh read and the one its write finds
/// (the server's millisecond clock). The server's time between the two is longer than the
/// caller's between the read's reply and the write's sending, so a key left alone always
/// passes; a key written again after an invalidation has a `PTTL` near the full TTL, and
/// fails as long as the value refreshed was older than twice this.
pub(super) const AGING_SLACK: Duration = Duration::from_millis(5);

/// How long a refresh claim outlives a refresh, or a lock found held elsewhere, for a
/// template whose computation time this process has not seen.
pub(super) const DEFAULT_DELTA: Duration = Duration::from_millis(50);

/// Added to an early refresh's lead over the expiry: see [`Core::early`].
pub(super) const REFRESH_SLACK: Duration = Duration::from_millis(10);

/// Most keys a cache remembers refresh claims for (see [`Core::claim_refresh`]); past it,
/// expired claims are dropped, and if all are live a caller goes to the store unclaimed.
pub(super) const MAX_CLAIMS: usize = 4096;

/// The uniform draw in (0, 1] of early refresh for the value of `key` that expires at
/// `expires_ms` (milliseconds on this process's clock): the same for every read of that
/// value in this process (its expiry, read with jitter, rounded to 256 ms), independent
/// between values and between processes (a per-process random hash key).
pub(super) fn version_draw(key: &str, expires_ms: u64) -> f64 {
    use std::hash::{BuildHasher, RandomState};
    static SEED: once_cell::sync::Lazy<RandomState> = once_cell::sync::Lazy::new(RandomState::new);
    let bits = SEED.hash_one((key, expires_ms >> 8)) >> 11;
    (bits as f64 + 1.0) / (1u64 << 53) as f64
}

/// Milliseconds since this process first asked: the clock of [`version_draw`].
pub(super) fn process_ms() -> u64 {
    static EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Core {
    /// A computation of the call's template took `took`: kept as its δ (a moving average,
    /// so one slow outlier does not set it alone).
    pub(crate) fn learn(&self, call: &Call<'_>, took: Duration) {
        if call.fresh.early_refresh <= 0.0 {
            return;
        }
        let mut deltas = self.deltas.lock().unwrap_or_else(|e| e.into_inner());
        match deltas.get_mut(call.template) {
            Some(d) => *d = (*d * 7 + took) / 8,
            None => {
                if deltas.len() >= MAX_DELTAS {
                    // Any one: a template forgotten is learnt again on its next computation.
                    if let Some(gone) = deltas.keys().next().cloned() {
                        deltas.remove(&gone);
                    }
                }
                deltas.insert(call.template.to_owned(), took);
            }
        }
    }

    /// XFetch on a hit with `left` to live in the store: refresh now when
    /// `δ·(5/4 + β·(−ln u)) + 10 ms ≥` the time left before the TTL, `δ` the template's recent
    /// computation time in this process (no refresh before one was seen), `u` uniform in
    /// (0, 1] and drawn once per value and process ([`version_draw`]).
    ///
    /// Two departures from the paper's `δ·β·(−ln u)` with a draw per read. A draw per read
    /// makes the refresh come earlier the more a key is read (the earliest of n draws comes
    /// about `δ·β·ln n` before the expiry: at 200,000 hits a second, β = 1 and δ = 50 ms,
    /// 460 ms before a 1 s TTL ran out, 1.85 computations per TTL); one draw per value makes
    /// it `δ·β` on average whatever the traffic, and `δ·β·ln p` with p processes. And the
    /// refresh starts at least `5/4·δ + 10 ms` before the expiry, so that it lands before
    /// the value expires (a value that expired under its readers would make them wait), with
    /// room for the lock's and the write's round trips and a busy machine's scheduling.
    ///
    /// The caller drawn takes the key's refresh lock (`SET NX` on a side key, for a lease
    /// time), so one caller across all processes refreshes while everyone else keeps
    /// reading the current value.
    pub(super) async fn early(
        &self,
        mode: Mode,
        call: &Call<'_>,
        left: Option<Duration>,
    ) -> Option<Refresh> {
        let beta = call.fresh.early_refresh;
        // A sliding read pushes the expiry the draw would race: nothing to refresh early.
        if beta <= 0.0 || call.control.sliding {
            return None;
        }
        let left = left?;
        let fresh_left = left.checked_sub(call.fresh.window())?;
        // A value written just now is never refreshed: the write's age check below must
        // tell it from one written again after an invalidation.
        if left + AGING_SLACK * 2 >= call.store_ttl() {
            return None;
        }
        let delta = self.delta(call)?;
        let expires_ms =
            process_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
        let draw = -version_draw(&call.key, expires_ms).ln();
        let gap = delta.as_secs_f64() * (1.25 + beta * draw) + REFRESH_SLACK.as_secs_f64();
        if gap < fresh_left.as_secs_f64() {
            return None;
        }
        self.take_refresh(mode, call, left).await
    }

    /// Whether this caller may try the refresh lock of `key`: not while another caller of
    /// this process holds it or lately found it held elsewhere. A claim lasts a lease time,
    /// cut by [`finish_refresh`](Self::finish_refresh) to the template's δ (50 ms if none
    /// was seen) after the write; one that found the lock held elsewhere lasts δ, after
    /// which the lock is worth another look.
    pub(super) fn claim_refresh(&self, call: &Call<'_>) -> bool {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = claims.get(&call.key) {
            if *until > now {
                return false;
            }
        }
        if claims.len() >= MAX_CLAIMS && !claims.contains_key(&call.key) {
            claims.retain(|_, until| *until > now);
            if claims.len() >= MAX_CLAIMS {
                return true;
            }
        }
        claims.insert(call.key.clone(), now + self.config.lease_ttl);
        true
    }

    /// The claim of `key` ends at `until` (`None`: now).
    pub(super) fn end_claim(&self, key: &str, until: Option<Instant>) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match until {
            Some(until) => {
                if let Some(u) = claims.get_mut(key) {
                    *u = until;
                }
            }
            None => {
                claims.remove(key);
            }
        }
    }

    /// Takes the key's refresh lock (`SET NX` on a side key, for a lease time), so that one
    /// caller across all processes refreshes while everyone else keeps reading the current
    /// value; `left` is the value's time to live in the store as read.
    pub(super) async fn take_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        left: Duration,
    ) -> Option<Refresh> {
        let (prefix, rest) = call.key.split_once(':')?;
        if !self.claim_refresh(call) {
            return None;
        }
        let lock = format!("{prefix}:[refresh]:{rest}");
        let token = lease_token();
        match self
            .backend
            .set_nx(mode, &lock, &token, self.config.lease_ttl)
            .await
        {
            Ok(true) => {
                call.debug(format_args!("REFRESH of {}", call.key));
                Some(Refresh {
                    lock,
                    token,
                    left,
                    read_at: Instant::now(),
                    ttl: None,
                })
            }
            Ok(false) => {
                let hold = self.delta(call).unwrap_or(DEFAULT_DELTA);
                self.end_claim(
                    &call.key,
                    Some(Instant::now() + hold.min(self.config.lease_ttl)),
                );
                None
            }
            Err(e) => {
                self.end_claim(&call.key, None);
                let _ = self.fault(call, "cache refresh lock", e);
                None
            }
        }
    }

    /// Writes an early refresh's value, only while the key still holds the bytes it
    /// refreshed and has not been written since (its `PTTL` no longer than it would be):
    /// an invalidation during the computation deletes the key, so the write does not land,
    /// as a lease holder's would not. A value declined by the call's conditions takes the
    /// old one out (as a [forced refresh](Self::finish_forced) does); nothing is written
    /// while the cache is switched off. Then gives the refresh lock back.
    pub(crate) async fn finish_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        refresh: Refresh,
        old: &[u8],
        outcome: &Computed,
    ) {
        let store_ttl = call.store_ttl_for(refresh.ttl);
        match outcome {
            Computed::Declined(_) => {
                if let Err(e) = self.delete_declined(mode, call, old).await {
                    call.served.fault();
                    self.report_fault("cache write", call.template, &call.key, &e);
                }
            }
            Computed::Value(stored) if self.is_enabled() => {
                self.write_refresh(mode, call, &refresh, old, stored, store_ttl)
                    .await
            }
            // Not written (`max_value_bytes`, or a value JSON would change): the old value
            // stays until its TTL.
            Computed::Unstorable(_) => Counters::add(&self.counters.unstorable, 1),
            _ => {}
        }
        if let Err(e) = self
            .backend
            .delete_if(mode, &refresh.lock, &refresh.token)
            .await
        {
            self.report_fault("cache refresh lock", call.template, &refresh.lock, &e);
        }
        // Held a moment more: a caller that read the old value just before the write would
        // otherwise draw, lock and compute a refresh whose write is refused (the value
        // changed); it reads the old value it has instead.
        let hold = self.delta(call).unwrap_or(DEFAULT_DELTA);
        self.end_claim(
            &call.key,
            Some(Instant::now() + hold.min(self.config.lease_ttl)),
        );
    }

    /// The template's δ in this process, if one was learnt.
    pub(super) fn delta(&self, call: &Call<'_>) -> Option<Duration> {
        self.deltas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(call.template)
            .copied()
    }

    /// An early refresh's write: see [`finish_refresh`](Self::finish_refresh).
    pub(super) async fn write_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        refresh: &Refresh,
        old: &[u8],
        stored: &[u8],
        store_ttl: Duration,
    ) {
        {
            // The tag entries first, as before a lease: they outlive the new value. Nothing
            // while an invalidation that names the key is queued.
            if self.held_back(&call.key, &call.fresh.tags) {
                return;
            }
            if let Ok(true) = self.index(mode, call, store_ttl).await {
                let max_left = refresh.left.saturating_sub(refresh.read_at.elapsed()) + AGING_SLACK;
                let written = if self.config.unchecked_lease_writes {
                    // The tests' negative control: a plain write.
                    self.backend
                        .set(mode, &call.key, stored, store_ttl)
                        .await
                        .map(|()| true)
                } else {
                    self.backend
                        .set_if_aging(mode, &call.key, old, max_left, stored, store_ttl)
                        .await
                };
                match written {
                    Ok(true) => {
                        Counters::add(&self.counters.sets, 1);
                        Counters::add(&self.counters.early_refreshes, 1);
                        telemetry::sets(call.template, 1);
                        self.changed(&call.key, false);
                    }
                    Ok(false) => call.debug(format_args!(
                        "Early refresh of {} not stored: the key changed or was invalidated meanwhile",
                        call.key
                    )),
                    Err(e) => {
                        call.served.fault();
                        self.report_fault("cache refresh", call.template, &call.key, &e)
                    }
                }
            }
        }
    }
}
