//! Leader election over any [`MetadataStore`]: one holder at a time of a named lease, so that
//! background work (garbage collection, scheduled imports, retention, webhook delivery) runs
//! on one replica, and moves to another within seconds of its holder dying.
//!
//! The lease is a record `lease\0<name>` = holder and a renewal counter, changed only in
//! transactions. Wall clocks of replicas are never compared: the holder rewrites the record
//! every round; a candidate takes it over only after watching it stay unchanged for a whole
//! `ttl` on its own monotonic clock, and a holder stops acting once `ttl / 2` has passed since
//! its last renewal began. So a holder that cannot renew (partitioned, paused) has stopped
//! before anyone else starts, as long as clocks run at roughly the same rate.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, MetadataStoreExt, TxError};
use crate::record::{decode, encode, Record};

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct LeaseRecord {
    holder: String,
    /// Changes at every renewal, so watchers see the holder is alive.
    renewals: u64,
}

impl Record for LeaseRecord {
    const KIND: &'static str = "lease";
    const VERSION: u8 = 1;
}

fn key(name: &str) -> Vec<u8> {
    format!("lease\0{name}").into_bytes()
}

pub struct Election {
    name: String,
    me: String,
    ttl: Duration,
    /// The other holder's record as last seen, and since when it has not changed.
    observed: Option<(LeaseRecord, Instant)>,
    /// When the last successful renewal (or acquisition) began.
    renewed: Option<Instant>,
}

enum Decision {
    Hold(LeaseRecord),
    Wait(LeaseRecord),
}

impl Election {
    /// `me` must be unique among the replicas (e.g. a random id per process).
    pub fn new(name: &str, me: &str, ttl: Duration) -> Self {
        Election {
            name: name.to_string(),
            me: me.to_string(),
            ttl,
            observed: None,
            renewed: None,
        }
    }

    /// How often [`Election::round`] should run.
    pub fn interval(&self) -> Duration {
        self.ttl / 6
    }

    /// Whether this replica may act as the leader now.
    pub fn leading(&self) -> bool {
        self.renewed.is_some_and(|t| t.elapsed() < self.ttl / 2)
    }

    /// Renews or tries to take the lease; returns [`Election::leading`] afterwards.
    pub fn round(&mut self, meta: &dyn MetadataStore) -> Result<bool> {
        let started = Instant::now();
        let key = key(&self.name);
        let (me, ttl, observed) = (&self.me, self.ttl, &self.observed);
        let decision = meta.transaction(|tx| {
            let current: Option<LeaseRecord> = match tx.get(&key)? {
                Some(v) => Some(decode(&v)?),
                None => None,
            };
            let take = |renewals| {
                let rec = LeaseRecord {
                    holder: me.clone(),
                    renewals,
                };
                Ok::<_, TxError<()>>(rec)
            };
            let decision = match current {
                None => Decision::Hold(take(0)?),
                Some(rec) if &rec.holder == me => Decision::Hold(take(rec.renewals + 1)?),
                Some(rec) => match observed {
                    // Unchanged for a whole ttl of our own clock: its holder is gone.
                    Some((seen, since)) if *seen == rec && since.elapsed() >= ttl => {
                        Decision::Hold(take(0)?)
                    }
                    _ => Decision::Wait(rec),
                },
            };
            if let Decision::Hold(rec) = &decision {
                tx.put(&key, &encode(rec))?;
            }
            Ok(decision)
        });
        match decision {
            Ok(Decision::Hold(_)) => {
                if !self.leading() {
                    tracing::info!(lease = %self.name, holder = %self.me, "took the lease");
                }
                self.renewed = Some(started);
                self.observed = None;
            }
            Ok(Decision::Wait(rec)) => {
                if self.renewed.take().is_some() {
                    tracing::warn!(lease = %self.name, holder = %rec.holder, "lost the lease");
                }
                let unchanged = matches!(&self.observed, Some((seen, _)) if *seen == rec);
                if !unchanged {
                    self.observed = Some((rec, Instant::now()));
                }
            }
            Err(TxError::Storage(e)) => return Err(e),
            Err(TxError::Abort(())) => return Err(Error::Backend("lease round aborted".into())),
        }
        Ok(self.leading())
    }

    /// Gives the lease up (at shutdown), so another replica takes it at its next round.
    pub fn resign(&mut self, meta: &dyn MetadataStore) -> Result<()> {
        self.renewed = None;
        let key = key(&self.name);
        let me = &self.me;
        meta.transaction(|tx| {
            if let Some(v) = tx.get(&key)? {
                let rec: LeaseRecord = decode(&v)?;
                if &rec.holder == me {
                    tx.delete(&key)?;
                }
            }
            Ok::<_, TxError<()>>(())
        })
        .map_err(|e| match e {
            TxError::Storage(e) => e,
            TxError::Abort(()) => Error::Backend("resign aborted".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_and_takeover_after_silence() {
        let meta = crate::sled_store::SledMetadata::open_temporary().unwrap();
        let ttl = Duration::from_millis(300);
        let mut a = Election::new("ctl", "a", ttl);
        let mut b = Election::new("ctl", "b", ttl);
        assert!(a.round(&meta).unwrap());
        assert!(!b.round(&meta).unwrap());
        // While a renews, b never takes over.
        for _ in 0..10 {
            std::thread::sleep(ttl / 6);
            assert!(a.round(&meta).unwrap());
            assert!(!b.round(&meta).unwrap());
        }
        // a goes silent: it stops leading after ttl/2, b takes over only after a full ttl.
        std::thread::sleep(ttl / 2);
        assert!(!a.leading());
        assert!(!b.round(&meta).unwrap());
        std::thread::sleep(ttl);
        assert!(b.round(&meta).unwrap());
        // a comes back: it sees b's lease and follows.
        assert!(!a.round(&meta).unwrap());
        // Resigning hands over at once (no silence to wait out).
        b.resign(&meta).unwrap();
        assert!(a.round(&meta).unwrap());
    }
}
