//! The import controller (spec §3.8): imports a tag when its spec is ahead of its status
//! ("import pending"), and re-imports scheduled tags every interval, at a bounded rate.
//!
//! It learns of spec changes from committed stream changes, and scans every stream once at
//! start, so imports pending when the server stopped resume after a restart. Scheduling needs
//! no state of its own: the spec says which tags are scheduled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::fetch::ImportMode;
use super::Importer;
use crate::imagestream::import::{pending, pending_tags, scheduled_tags};
use crate::imagestream::service::ImageStreams;
use crate::imagestream::types::{ImageStream, TagReference};
use crate::imagestream::Change;

/// Imports running at once; each is mostly waiting on a remote registry.
const MAX_CONCURRENT_IMPORTS: usize = 8;

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Zero disables scheduled imports (pending imports still run).
    pub interval: Duration,
    pub max_per_minute: u32,
}

type TagKey = (String, String, String);

/// Starts the controller; it runs until the returned handle is aborted.
pub fn spawn(importer: Importer, schedule: Schedule) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel::<(String, String)>();
    // Only stream changes whose spec has a pending import matter; checking here keeps the
    // channel quiet during ordinary pushes.
    importer
        .registry()
        .events()
        .listen(Arc::new(move |change: &Change| {
            if let Change::Stream { stream, .. } = change {
                if pending_tags(stream).next().is_some() {
                    let _ = tx.send((
                        stream.metadata.namespace.clone(),
                        stream.metadata.name.clone(),
                    ));
                }
            }
        }));
    tokio::spawn(run(importer, schedule, rx))
}

async fn run(
    importer: Importer,
    schedule: Schedule,
    mut changed: mpsc::UnboundedReceiver<(String, String)>,
) {
    let controller = Controller {
        streams: ImageStreams::new(importer.registry().clone()),
        importer,
        running: Arc::new(Mutex::new(HashMap::new())),
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT_IMPORTS)),
    };
    controller.scan(false, &mut Budget::unlimited());
    let scheduling = !schedule.interval.is_zero();
    let mut tick = tokio::time::interval(if scheduling {
        schedule.interval
    } else {
        Duration::from_secs(3600)
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the start-up scan covered it
    let mut budget = Budget::per_minute(schedule.max_per_minute);
    loop {
        tokio::select! {
            next = changed.recv() => {
                let Some((ns, name)) = next else { return };
                if let Ok(stream) = controller.streams.get_tops(&ns, &name) {
                    for tag in pending_tags(&stream) {
                        controller.start(&stream, tag.clone());
                    }
                }
            }
            _ = tick.tick(), if scheduling => controller.scan(true, &mut budget),
        }
    }
}

struct Controller {
    importer: Importer,
    streams: ImageStreams,
    /// Tags being imported now, and whether another request came in meanwhile (then the tag
    /// is checked again when the running import ends, instead of importing twice at once).
    running: Arc<Mutex<HashMap<TagKey, bool>>>,
    slots: Arc<Semaphore>,
}

impl Controller {
    /// Starts every pending import, and with `scheduled` every scheduled one the budget allows.
    fn scan(&self, scheduled: bool, budget: &mut Budget) {
        // Import decisions need each tag's spec and top event, never the whole history.
        let streams = match self.streams.list_tops(None) {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(error = %e, "import controller cannot list image streams");
                return;
            }
        };
        for stream in &streams {
            for tag in pending_tags(stream) {
                self.start(stream, tag.clone());
            }
            if !scheduled {
                continue;
            }
            for tag in scheduled_tags(stream) {
                // A tag pinned by digest cannot change; it is polled only until it succeeds.
                let pinned = tag.from.as_ref().is_some_and(|f| f.name.contains('@'));
                if pinned && stream.current_image(&tag.name).is_some() {
                    continue;
                }
                if !budget.take() {
                    tracing::debug!("scheduled import budget spent; the rest wait a tick");
                    return;
                }
                self.start(stream, tag.clone());
            }
        }
    }

    fn start(&self, stream: &ImageStream, tag: TagReference) {
        if ImportMode::parse(&tag.import_policy.import_mode).is_none() {
            // Validation refuses these; an old record must not make the controller spin.
            return;
        }
        let key = (
            stream.metadata.namespace.clone(),
            stream.metadata.name.clone(),
            tag.name.clone(),
        );
        {
            let mut running = self.running.lock().unwrap();
            if let Some(again) = running.get_mut(&key) {
                // The running import may finish with an outdated spec; look again after it.
                *again = true;
                return;
            }
            running.insert(key.clone(), false);
        }
        let (importer, running, slots) = (
            self.importer.clone(),
            self.running.clone(),
            self.slots.clone(),
        );
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let (ns, name, tag_name) = &key;
            let mut tag = tag;
            loop {
                if let Err(e) = importer.import_tag(ns, name, &tag).await {
                    tracing::warn!(stream = %format!("{ns}/{name}"), tag = %tag_name,
                        error = %e, "recording an import failed");
                }
                let again = {
                    let mut running = running.lock().unwrap();
                    let again = running.get(&key).copied().unwrap_or(false);
                    if again {
                        running.insert(key.clone(), false);
                    } else {
                        running.remove(&key);
                    }
                    again
                };
                let next = again
                    .then(|| {
                        ImageStreams::new(importer.registry().clone())
                            .get_tops(ns, name)
                            .ok()
                    })
                    .flatten()
                    .and_then(|s| s.spec_tag(tag_name).filter(|t| pending(&s, t)).cloned());
                match next {
                    Some(t) => tag = t,
                    None => {
                        running.lock().unwrap().remove(&key);
                        return;
                    }
                }
            }
        });
    }
}

/// A token bucket: at most `per_minute` scheduled imports start in any minute.
struct Budget {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl Budget {
    fn per_minute(n: u32) -> Budget {
        let capacity = f64::from(n.max(1));
        Budget {
            capacity,
            tokens: capacity,
            per_sec: capacity / 60.0,
            last: Instant::now(),
        }
    }

    fn unlimited() -> Budget {
        Budget {
            capacity: f64::INFINITY,
            tokens: f64::INFINITY,
            per_sec: 0.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_refills_per_minute() {
        let mut b = Budget::per_minute(2);
        assert!(b.take() && b.take());
        assert!(!b.take());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.take());
        assert!(!b.take());
        assert!(Budget::unlimited().take());
    }
}
