//! What a run measured: one row per (workload, metric) with every repetition's value per server.

use serde::{Deserialize, Serialize};

use crate::server::Kind;
use crate::stats;

/// Whether a larger value is better (throughput) or worse (latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Workload number as in issues 8 and 12 ("1".."9"), with a short name.
    pub id: String,
    pub workload: String,
    pub metric: String,
    pub better: Better,
    /// One value per repetition.
    pub berth: Vec<f64>,
    /// Empty for berth-only rows.
    pub peer: Vec<f64>,
    pub berth_failures: u64,
    pub peer_failures: u64,
    /// The target for the berth/peer ratio (normalised so that > 1 means berth wins).
    pub target: Option<f64>,
    /// Whether this row is compared with the peer (a berth-only or setup row is not charted).
    pub compared: bool,
    /// Shown instead of a ratio when the two figures do not measure the same thing.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(v: &[f64]) -> Option<Summary> {
        (!v.is_empty()).then(|| Summary {
            median: stats::median(v),
            min: stats::min(v),
            max: stats::max(v),
        })
    }
}

impl Row {
    /// berth/peer of the medians, normalised so > 1 means berth is better.
    pub fn ratio(&self) -> Option<f64> {
        let b = Summary::of(&self.berth)?.median;
        let p = Summary::of(&self.peer)?.median;
        if b <= 0.0 || p <= 0.0 {
            return None;
        }
        Some(match self.better {
            Better::Higher => b / p,
            Better::Lower => p / b,
        })
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub rows: Vec<Row>,
    /// The first failure message seen per (workload, server), for the report.
    pub errors: Vec<String>,
    /// Deviations from the plan (e.g. a setup stopped at the RSS cap), for the report.
    pub notes: Vec<String>,
    /// Targets that are not a berth/peer ratio of one row (absolute bounds, ratios within one
    /// server), each with the figure it was judged on.
    pub checks: Vec<Check>,
}

/// One target and whether this run met it; `met` is `None` when the figure was not measured.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: String,
    pub target: String,
    pub figure: String,
    pub met: Option<bool>,
}

impl Results {
    fn row(&mut self, id: &str, workload: &str, metric: &str, better: Better) -> &mut Row {
        if let Some(i) = self
            .rows
            .iter()
            .position(|r| r.id == id && r.workload == workload && r.metric == metric)
        {
            return &mut self.rows[i];
        }
        self.rows.push(Row {
            id: id.to_string(),
            workload: workload.to_string(),
            metric: metric.to_string(),
            better,
            berth: Vec::new(),
            peer: Vec::new(),
            berth_failures: 0,
            peer_failures: 0,
            target: None,
            compared: true,
            note: None,
        });
        self.rows.last_mut().expect("just pushed")
    }

    /// Records one repetition's value of a metric for `kind`.
    pub fn add(&mut self, m: &Metric, kind: Kind, value: f64) {
        let row = self.row(m.id, m.workload, m.metric, m.better);
        row.target = m.target;
        row.compared = m.compared;
        row.note = m.note.map(str::to_string);
        match kind {
            Kind::Berth => row.berth.push(value),
            Kind::Peer => row.peer.push(value),
        }
    }

    /// Counts failed operations against every metric of a workload for `kind`.
    pub fn fail(&mut self, m: &Metric, kind: Kind, count: u64, first: Option<String>) {
        if count == 0 {
            return;
        }
        let row = self.row(m.id, m.workload, m.metric, m.better);
        row.target = m.target;
        row.compared = m.compared;
        match kind {
            Kind::Berth => row.berth_failures += count,
            Kind::Peer => row.peer_failures += count,
        }
        if let Some(e) = first {
            let line = format!("{} {} ({}): {e}", m.id, m.workload, kind.label());
            eprintln!("FAILURE {line}");
            if self.errors.len() < 50 {
                self.errors.push(line);
            }
        }
    }

    pub fn berth_failures(&self) -> u64 {
        self.rows.iter().map(|r| r.berth_failures).sum()
    }
}

/// Static description of a metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub id: &'static str,
    pub workload: &'static str,
    pub metric: &'static str,
    pub better: Better,
    pub target: Option<f64>,
    pub compared: bool,
    pub note: Option<&'static str>,
}

impl Metric {
    pub const fn higher(id: &'static str, workload: &'static str, metric: &'static str) -> Self {
        Metric {
            id,
            workload,
            metric,
            better: Better::Higher,
            target: None,
            compared: true,
            note: None,
        }
    }
    pub const fn lower(id: &'static str, workload: &'static str, metric: &'static str) -> Self {
        Metric {
            better: Better::Lower,
            ..Metric::higher(id, workload, metric)
        }
    }
    pub const fn target(self, t: f64) -> Self {
        Metric {
            target: Some(t),
            ..self
        }
    }
    /// Not compared with the peer: the note says why.
    pub const fn note(self, note: &'static str) -> Self {
        Metric {
            note: Some(note),
            compared: false,
            ..self
        }
    }
    /// Not charted: setup rates and berth-only figures.
    pub const fn uncompared(self) -> Self {
        Metric {
            compared: false,
            ..self
        }
    }
}
