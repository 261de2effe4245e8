//! Named cases, run in order, reported as `PASS name` / `FAIL name: reason`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::client::R;
use crate::ops::Ctx;

type CaseFn<S> = Box<dyn Fn(&Ctx, &mut S) -> R>;

/// One named check. Cases of a workflow share a state `S` (what earlier
/// cases pushed), and run in the order they are listed.
pub struct Case<S> {
    name: String,
    run: CaseFn<S>,
}

pub fn case<S>(name: impl Into<String>, f: impl Fn(&Ctx, &mut S) -> R + 'static) -> Case<S> {
    Case {
        name: name.into(),
        run: Box::new(f),
    }
}

#[derive(Default)]
pub struct Reporter {
    pub passed: usize,
    pub failed: usize,
}

impl Reporter {
    /// Runs `cases` in order, each named `<prefix>/<case name>`.
    pub fn run<S>(&mut self, ctx: &Ctx, prefix: &str, state: &mut S, cases: Vec<Case<S>>) {
        for c in cases {
            let name = format!("{prefix}/{}", c.name);
            let result = catch_unwind(AssertUnwindSafe(|| (c.run)(ctx, state)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))));
            self.record(&name, result);
        }
    }

    pub fn record(&mut self, name: &str, result: R) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(reason) => {
                self.failed += 1;
                println!("FAIL {name}: {}", reason.replace('\n', " "));
            }
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Unwraps state left by an earlier case, or fails with a clear reason.
pub fn need<'a, T>(v: &'a Option<T>, what: &str) -> R<&'a T> {
    v.as_ref()
        .ok_or_else(|| format!("prerequisite missing: {what} (an earlier case failed)"))
}

/// Fails with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> R {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Collects the failures of independent steps, so a workflow goes on after
/// one of them fails (a teardown still deletes what it can) and the case
/// reports every failure.
#[derive(Default)]
pub struct Soft(Vec<String>);

impl Soft {
    pub fn check<T>(&mut self, r: R<T>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }

    pub fn finish(self) -> R {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.into_iter().next().unwrap_or_default()),
            n => Err(format!("{n} failures: {}", self.0.join(" | "))),
        }
    }
}
