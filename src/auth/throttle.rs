//! Budgets of failed password logins, per user name and per source address, so passwords
//! cannot be guessed at the speed the server answers.
//!
//! Each budget is a fixed one-minute window: the first failure opens it, and once `limit`
//! failures are in it every login attempt for that name (or from that source), right password
//! or not, is refused until it closes. Refusing before bcrypt runs also keeps an attacker from
//! spending the server's CPU. Successful logins neither consume nor reset a budget: resetting
//! would let someone who holds one valid password clear the source budget between guesses.
//!
//! Memory is bounded: each table tracks at most [`MAX_TRACKED`] keys; when full, closed windows
//! are dropped, then the oldest open one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked per table (names, sources).
pub const MAX_TRACKED: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);
/// Longer names are not valid user names; tracking their prefix keeps keys small.
const MAX_NAME_BYTES: usize = 64;

/// Failed logins allowed per minute; 0 turns a budget off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_user: u32,
    pub per_source: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_user: 10,
            per_source: 30,
        }
    }
}

/// A refused login: how long until the exhausted budget's window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds, rounded up (a `Retry-After` of 0 would invite an immediate retry).
    pub fn retry_after_secs(&self) -> u64 {
        let ms = self.retry_after.as_millis() as u64;
        ms.div_ceil(1000).max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

struct Table<K> {
    limit: u32,
    windows: HashMap<K, Window>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(limit: u32) -> Self {
        Table {
            limit,
            windows: HashMap::new(),
        }
    }

    /// When the window of `key` closes, if its budget is spent.
    fn exhausted(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let w = self.windows.get(key)?;
        let closes = w.opened + WINDOW;
        (w.failures >= self.limit && closes > now).then(|| closes - now)
    }

    /// Counts a failure; true when this one spent the budget.
    fn fail(&mut self, key: &K, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let w = self.windows.entry(key.clone()).or_insert(Window {
            opened: now,
            failures: 0,
        });
        if now.duration_since(w.opened) >= WINDOW {
            *w = Window {
                opened: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures == self.limit
    }

    fn make_room(&mut self, now: Instant) {
        self.windows
            .retain(|_, w| now.duration_since(w.opened) < WINDOW);
        if self.windows.len() >= MAX_TRACKED {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.opened)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.windows.remove(&k);
            }
        }
    }
}

/// Where a login comes from. IPv6 clients are grouped by /64: one host usually holds a whole
/// /64 and could otherwise pick a fresh address for every guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(IpAddr);

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
            v4 => Source(v4),
        }
    }
}

pub struct LoginThrottle {
    state: Mutex<(Table<String>, Table<Source>)>,
}

fn name_key(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        LoginThrottle {
            state: Mutex::new((Table::new(limits.per_user), Table::new(limits.per_source))),
        }
    }

    /// Whether a login for `name` from `source` may be tried now.
    pub fn check(&self, name: &str, source: Option<IpAddr>) -> Result<(), Throttled> {
        let now = Instant::now();
        let state = self.state.lock().unwrap();
        let by_name = state.0.exhausted(&name_key(name), now);
        let by_source = source.and_then(|ip| state.1.exhausted(&Source::of(ip), now));
        match by_name.into_iter().chain(by_source).max() {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a failed login; true when it spent a budget (worth a log line).
    pub fn fail(&self, name: &str, source: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let by_name = state.0.fail(&name_key(name), now);
        let by_source = source.is_some_and(|ip| state.1.fail(&Source::of(ip), now));
        by_name || by_source
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.0.windows.len(), state.1.windows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn budgets_per_name_and_per_source() {
        let t = LoginThrottle::new(LoginLimits {
            per_user: 2,
            per_source: 3,
        });
        let a = ip("192.0.2.1");
        assert!(t.check("alice", a).is_ok());
        assert!(!t.fail("alice", a));
        assert!(
            t.fail("alice", a),
            "the second failure spends alice's budget"
        );
        let refused = t.check("alice", a).unwrap_err();
        assert!(refused.retry_after <= WINDOW && refused.retry_after_secs() >= 1);
        // Another name from the same source still has the source's budget (2 of 3 spent).
        assert!(t.check("bob", a).is_ok());
        // alice is refused from anywhere.
        assert!(t.check("alice", ip("198.51.100.7")).is_err());
        assert!(
            t.fail("carol", a),
            "the third failure spends the source's budget"
        );
        assert!(t.check("bob", a).is_err());
        assert!(t.check("bob", ip("198.51.100.7")).is_ok());
        assert!(t.check("bob", None).is_ok());
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_v4_is_v4() {
        let t = LoginThrottle::new(LoginLimits {
            per_user: 0,
            per_source: 1,
        });
        t.fail("x", ip("2001:db8:1:2::1"));
        assert!(t.check("y", ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(t.check("y", ip("2001:db8:1:3::1")).is_ok());
        t.fail("x", ip("::ffff:192.0.2.9"));
        assert!(t.check("y", ip("192.0.2.9")).is_err());
    }

    #[test]
    fn zero_turns_a_budget_off_and_memory_is_bounded() {
        let t = LoginThrottle::new(LoginLimits {
            per_user: 0,
            per_source: 0,
        });
        for _ in 0..100 {
            t.fail("alice", ip("192.0.2.1"));
        }
        assert!(t.check("alice", ip("192.0.2.1")).is_ok());
        assert_eq!(t.tracked(), (0, 0));

        let t = LoginThrottle::new(LoginLimits::default());
        for i in 0..(MAX_TRACKED + 50) {
            t.fail(&format!("user-{i}"), None);
        }
        assert_eq!(t.tracked().0, MAX_TRACKED);
        let long = "x".repeat(10_000);
        t.fail(&long, None);
        assert!(t
            .state
            .lock()
            .unwrap()
            .0
            .windows
            .keys()
            .all(|k| k.len() <= MAX_NAME_BYTES));
    }
}
