//! The master's in-memory paired set: fingerprint → the paired terminal's
//! record, checked on every request without a database round trip. A
//! background task keeps it equal to the store: when the paired-set
//! generation moves (woken by NOTIFY on PostgreSQL, by polling on SQLite,
//! and by a periodic reconcile) it re-reads only the terminals the
//! store's change log names; it reloads the whole set at start, when the
//! PostgreSQL listener drops, or when the log cannot account for every
//! generation since its last look. Every change bumps a version that open
//! connections watch, so an unpaired terminal's connections close at once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use pairgate_pki::TerminalFingerprint;
use pairgate_store::{PairedChange, Serial, Store, StoreError, Terminal, Wake};
use tokio::sync::watch;

use crate::metrics::Histogram;

/// Changes applied one terminal at a time; more at once reload the set.
const MAX_INCREMENTAL: i64 = 1_000;

/// The set, indexed both ways: a change names a serial, a request a
/// fingerprint. A terminal that has proven a new key over the master and
/// not used it yet is found by both keys (paired and successor).
#[derive(Debug, Default)]
struct Entries {
    by_fingerprint: HashMap<TerminalFingerprint, Arc<Terminal>>,
    by_serial: HashMap<Serial, [Option<TerminalFingerprint>; 2]>,
}

impl Entries {
    fn insert(&mut self, terminal: Arc<Terminal>) {
        self.remove(&terminal.serial);
        let keys = [terminal.paired_fingerprint, terminal.successor_fingerprint];
        for fingerprint in keys.iter().flatten() {
            self.by_fingerprint.insert(*fingerprint, terminal.clone());
        }
        self.by_serial.insert(terminal.serial.clone(), keys);
    }

    fn remove(&mut self, serial: &Serial) {
        if let Some(keys) = self.by_serial.remove(serial) {
            for fingerprint in keys.iter().flatten() {
                self.by_fingerprint.remove(fingerprint);
            }
        }
    }
}

impl FromIterator<(TerminalFingerprint, Terminal)> for Entries {
    fn from_iter<I: IntoIterator<Item = (TerminalFingerprint, Terminal)>>(rows: I) -> Self {
        let mut entries = Self::default();
        for (_, terminal) in rows {
            entries.insert(Arc::new(terminal));
        }
        entries
    }
}

/// How a follower's look at the store went, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct FollowStats {
    /// Whole-set reloads.
    pub full: AtomicU64,
    /// Changes applied one terminal at a time.
    pub incremental: AtomicU64,
    /// From a change in the store to this set applying it.
    pub lag: Histogram,
}

/// The paired set.
#[derive(Debug)]
pub struct PairedSet {
    map: RwLock<Entries>,
    version: watch::Sender<u64>,
    unreadable: AtomicUsize,
    /// The store generation the map was last loaded at; held while a
    /// reload runs, so callers arriving together share one.
    loaded: tokio::sync::Mutex<Option<i64>>,
    /// The same generation for monitoring (-1 before the first check).
    generation: AtomicI64,
    /// Whether the last look at the store succeeded.
    following: AtomicBool,
    /// When the set last agreed with the store (runtime time: a test's
    /// manual clock moving days ahead must not make it stale).
    checked: std::sync::Mutex<tokio::time::Instant>,
    /// Not checked for longer than `stale_after_secs`: refuse.
    stale: AtomicBool,
    /// Reloads, changes and their lag.
    pub(crate) stats: FollowStats,
}

impl PairedSet {
    /// Loads the set from the store.
    pub async fn load(store: &Store) -> Result<Arc<Self>, StoreError> {
        let unreadable = AtomicUsize::new(0);
        let map = load_map(store, &unreadable).await?;
        Ok(Arc::new(Self {
            map: RwLock::new(map),
            version: watch::Sender::new(0),
            unreadable,
            loaded: tokio::sync::Mutex::new(None),
            generation: AtomicI64::new(-1),
            following: AtomicBool::new(true),
            checked: std::sync::Mutex::new(tokio::time::Instant::now()),
            stale: AtomicBool::new(false),
            stats: FollowStats::default(),
        }))
    }

    /// The store generation last loaded (-1 before the first check).
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether the last look at the store succeeded: false while the
    /// store cannot be read, so `/readyz` says so.
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// Whether the set has gone unchecked against the store for longer
    /// than `stale_after_secs`: the master then refuses every request,
    /// since an unpair may have been made that it cannot see.
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Marks the set stale once it has gone unchecked for `stale_after`,
    /// and fresh again once checked, every second until `shutdown`.
    pub(crate) async fn watch_staleness(
        self: Arc<Self>,
        stale_after: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let every = (stale_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let checked = *self
                .checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let age = checked.elapsed();
            let stale = age > stale_after;
            if stale != self.stale.swap(stale, Ordering::Relaxed) {
                if stale {
                    tracing::error!(unchecked = ?age, "the paired set has not been checked against the store for longer than stale_after_secs: refusing every master request until it is");
                } else {
                    tracing::warn!("the paired set is checked against the store again: serving");
                }
            }
        }
    }

    /// Paired rows left out of the last load because they did not read
    /// (logged; those terminals are refused until the rows are repaired).
    pub fn unreadable_rows(&self) -> usize {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// The serial paired with `fingerprint`, if any.
    pub fn serial(&self, fingerprint: &TerminalFingerprint) -> Option<Serial> {
        self.terminal(fingerprint).map(|t| t.serial.clone())
    }

    /// The terminal paired with `fingerprint`, as last loaded (and updated
    /// by this instance's heartbeats), if any.
    pub fn terminal(&self, fingerprint: &TerminalFingerprint) -> Option<Arc<Terminal>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_fingerprint
            .get(fingerprint)
            .cloned()
    }

    /// Records a heartbeat the store has accepted in the cached record, so
    /// that `GET /v1/me` on this instance shows it at once (other
    /// instances show it from their next reload).
    pub(crate) fn seen(
        &self,
        fingerprint: &TerminalFingerprint,
        at: i64,
        address: &str,
        firmware: Option<&str>,
    ) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = map.by_fingerprint.get(fingerprint) {
            let mut t = Terminal::clone(entry);
            t.last_seen_at = Some(at);
            t.last_seen_address = Some(address.to_owned());
            if let Some(firmware) = firmware {
                t.firmware = Some(firmware.to_owned());
            }
            map.insert(Arc::new(t));
        }
    }

    /// How many terminals are paired.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_serial
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replace(&self, map: Entries) {
        *self.write() = map;
        self.version.send_modify(|v| *v += 1);
    }

    /// Keeps the set in step with the store until `shutdown`.
    pub(crate) async fn follow(
        self: Arc<Self>,
        store: Store,
        poll: Duration,
        reconcile: Duration,
        clock: pairgate_clock::Clock,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut watch = None;
        let mut force = true;
        loop {
            if watch.is_none() {
                match store.watch_paired(poll, reconcile).await {
                    Ok(w) => {
                        watch = Some(w);
                        // Changes may have happened while unwatched.
                        force = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot watch the paired set; retrying"),
                }
            }
            let refreshed = self.refresh(&store, force, clock.now()).await;
            self.following.store(refreshed.is_ok(), Ordering::Relaxed);
            if refreshed.is_ok() {
                *self
                    .checked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    tokio::time::Instant::now();
            }
            match refreshed {
                Ok(()) => force = false,
                Err(e) => tracing::warn!(error = %e, "reloading the paired set failed; retrying"),
            }
            let wake = async {
                match watch.as_mut() {
                    Some(w) => w.wait().await,
                    None => {
                        tokio::time::sleep(poll.max(Duration::from_millis(500))).await;
                        Wake::Reload
                    }
                }
            };
            tokio::select! {
                wake = wake => if wake == Wake::Reload { force = true },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The terminal paired with `fingerprint` in the store now, added to
    /// the set if it is missing. The gate calls it before telling a
    /// terminal it is approved, so that this instance's master serves the
    /// terminal's first call rather than refusing it until the next
    /// reload, and without reloading the whole set per approval.
    ///
    /// Safe against a concurrent unpair: the row is read under the same
    /// lock that reloads take, and an entry added here leaves the loaded
    /// generation alone, so an unpair committed after the read (which
    /// moves the generation) still makes the next reload drop it.
    pub(crate) async fn admit(
        &self,
        store: &Store,
        fingerprint: &TerminalFingerprint,
    ) -> Result<Option<Arc<Terminal>>, StoreError> {
        let _loaded = self.loaded.lock().await;
        let Some(terminal) = store.paired_terminal(fingerprint).await? else {
            return Ok(None);
        };
        let terminal = Arc::new(terminal);
        self.write().insert(terminal.clone());
        Ok(Some(terminal))
    }

    /// Re-reads terminal `serial` from the store now, as [`Self::admit`]
    /// does (and as safely against a concurrent change): the master calls
    /// it after this instance changed the terminal's keys, so that its
    /// next request sees the change without waiting for the follower.
    /// Connections with a key no longer served close.
    pub(crate) async fn refresh_serial(
        &self,
        store: &Store,
        serial: &Serial,
    ) -> Result<Option<Arc<Terminal>>, StoreError> {
        let _loaded = self.loaded.lock().await;
        let row = store.paired_terminal_by_serial(serial).await?;
        let terminal = row.map(Arc::new);
        {
            let mut map = self.write();
            match &terminal {
                Some(t) => map.insert(t.clone()),
                None => map.remove(serial),
            }
        }
        self.version.send_modify(|v| *v += 1);
        Ok(terminal)
    }

    /// Brings the set up to the store's generation: the changes the log
    /// names one terminal at a time, or the whole set when `force`, at
    /// the first look, or when the log cannot account for every change.
    /// A reload or a re-read can only drop a terminal the store no longer
    /// pairs, never keep one.
    async fn refresh(&self, store: &Store, force: bool, now: SystemTime) -> Result<(), StoreError> {
        let mut loaded = self.loaded.lock().await;
        if let (Some(after), false) = (*loaded, force) {
            match self.apply_changes(store, after, now).await {
                Ok(Some(generation)) => {
                    *loaded = Some(generation);
                    self.generation.store(generation, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "applying paired-set changes failed; reloading")
                }
            }
        }
        let generation = store.paired_generation().await?;
        self.replace(load_map(store, &self.unreadable).await?);
        self.stats.full.fetch_add(1, Ordering::Relaxed);
        *loaded = Some(generation);
        self.generation.store(generation, Ordering::Relaxed);
        Ok(())
    }

    /// Re-reads the terminals changed after generation `after`; the
    /// generation reached, or `None` when the log cannot tell (reload).
    async fn apply_changes(
        &self,
        store: &Store,
        after: i64,
        now: SystemTime,
    ) -> Result<Option<i64>, StoreError> {
        let Some(changes) = store.paired_changes_since(after, MAX_INCREMENTAL).await? else {
            return Ok(None);
        };
        let Some(last) = changes.last().map(|c| c.generation) else {
            return Ok(Some(after));
        };
        let mut serials: Vec<&Serial> = changes.iter().map(|c| &c.serial).collect();
        serials.sort_unstable_by_key(|s| s.as_str());
        serials.dedup();
        let mut rows = Vec::with_capacity(serials.len());
        for serial in serials {
            rows.push((
                serial.clone(),
                store.paired_terminal_by_serial(serial).await?,
            ));
        }
        {
            let mut map = self.write();
            for (serial, row) in rows {
                match row.filter(|t| t.paired_fingerprint.is_some()) {
                    Some(terminal) => map.insert(Arc::new(terminal)),
                    None => map.remove(&serial),
                }
            }
        }
        self.version.send_modify(|v| *v += 1);
        self.observe(&changes, now);
        Ok(Some(last))
    }

    /// Counts applied changes and how long each took to arrive here.
    fn observe(&self, changes: &[PairedChange], now: SystemTime) {
        let now = crate::unix_millis(now);
        for change in changes {
            let lag = u64::try_from(now.saturating_sub(change.at)).unwrap_or(0);
            self.stats.lag.observe(Duration::from_millis(lag));
        }
        let n = u64::try_from(changes.len()).unwrap_or(0);
        self.stats.incremental.fetch_add(n, Ordering::Relaxed);
    }
}

async fn load_map(store: &Store, unreadable: &AtomicUsize) -> Result<Entries, StoreError> {
    let rows = store.paired_terminals().await?;
    // Fail closed for a row that does not read, and only for it.
    for why in &rows.unreadable {
        tracing::error!(row = %why, "a paired terminal's row does not read; it is refused until repaired");
    }
    unreadable.store(rows.unreadable.len(), Ordering::Relaxed);
    Ok(rows.terminals.into_iter().collect())
}

impl PairedSet {
    /// Completes when `fingerprint`, served when the connection was
    /// served, is no longer (unpaired or suspended). A connection that was
    /// never served is not closed here: each of its requests gets `403`.
    pub(crate) fn closed(
        self: &Arc<Self>,
        fingerprint: TerminalFingerprint,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let set = self.clone();
        let mut versions = self.version.subscribe();
        Box::pin(async move {
            if set.terminal(&fingerprint).is_none() {
                return std::future::pending().await;
            }
            while versions.changed().await.is_ok() {
                if set.terminal(&fingerprint).is_none() {
                    return;
                }
            }
            std::future::pending().await
        })
    }
}
