//! The Markdown tables printed after a run, results.json and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::limits::Limits;
use crate::results::{Results, Row, Summary};
use crate::workloads::Plan;

/// Memory of both servers after one phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    pub after: String,
    /// The machine's 1-minute load average then (other work on the machine skews figures).
    pub load1: f64,
    pub berth_hwm: u64,
    pub berth_rss: u64,
    pub peer_hwm: u64,
    pub peer_rss: u64,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub quick: bool,
    pub cores: usize,
    pub peer_version: String,
    pub plan: &'a Plan,
    pub limits: Option<&'a Limits>,
    pub results: &'a Results,
    pub memory: &'a [MemorySample],
    pub elapsed_s: f64,
}

/// Three significant figures, without exponent notation.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(v: &[f64], failures: u64) -> String {
    let mut s = match Summary::of(v) {
        Some(s) if v.len() > 1 => {
            format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max))
        }
        Some(s) => num(s.median),
        None => "—".to_string(),
    };
    if failures > 0 {
        let _ = write!(s, " ({failures} failed)");
    }
    s
}

fn ratio_cell(r: &Row) -> String {
    if let Some(note) = &r.note {
        return note.clone();
    }
    match (r.ratio(), r.target) {
        (Some(x), Some(t)) => format!(
            "{}× ({} {}×)",
            num(x),
            if x >= t { "meets" } else { "below" },
            num(t)
        ),
        (Some(x), None) => format!("{}×", num(x)),
        (None, _) => "—".to_string(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The results table (Markdown), memory, and the machine limits.
pub fn tables(rep: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| # | workload | metric | berth median [min–max] | {} median [min–max] | ratio (>1 = berth better) |",
        rep.peer_version
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut rows: Vec<&Row> = rep.results.rows.iter().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    for r in rows {
        if r.id == "0" {
            continue;
        }
        let peer = if r.peer.is_empty() && r.peer_failures == 0 {
            "—".to_string()
        } else {
            cell(&r.peer, r.peer_failures)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.id,
            r.workload,
            r.metric,
            cell(&r.berth, r.berth_failures),
            peer,
            ratio_cell(r)
        );
    }
    if !rep.results.checks.is_empty() {
        let _ = writeln!(out, "\nTargets and the figures they were judged on:\n");
        let _ = writeln!(out, "| # | target | this run | met? |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &rep.results.checks {
            let met = match c.met {
                Some(true) => "met",
                Some(false) => "not met",
                None => "not measured",
            };
            let _ = writeln!(out, "| {} | {} | {} | {met} |", c.id, c.target, c.figure);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Peak RSS (VmHWM), and current RSS, after each phase:\n"
    );
    let _ = writeln!(
        out,
        "| after | load avg (1 min) | berth VmHWM | berth VmRSS | peer VmHWM | peer VmRSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for m in rep.memory {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {} | {} | {} | {} |",
            m.after,
            m.load1,
            mib(m.berth_hwm),
            mib(m.berth_rss),
            mib(m.peer_hwm),
            mib(m.peer_rss)
        );
    }
    let peak = |f: fn(&MemorySample) -> u64| rep.memory.iter().map(f).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\nPeak RSS over the run: berth {}, peer {}.",
        mib(peak(|m| m.berth_hwm)),
        mib(peak(|m| m.peer_hwm))
    );
    for n in &rep.results.notes {
        let _ = writeln!(out, "\nNote: {n}");
    }
    if let Some(l) = rep.limits {
        let _ = writeln!(
            out,
            "\nMachine limits ({} cores), same tool, median of 3:\n",
            rep.cores
        );
        let _ = writeln!(out, "| limit | MB/s |");
        let _ = writeln!(out, "|---|---|");
        let _ = writeln!(out, "| SHA-256, one core | {} |", num(l.sha256_mb_s));
        let _ = writeln!(
            out,
            "| sequential write + fsync | {} |",
            num(l.fsync_write_mb_s)
        );
        let _ = writeln!(
            out,
            "| loopback TCP, one connection | {} |",
            num(l.loopback_tcp_mb_s)
        );
        // A push must cross loopback, be hashed and be written with fsync; a checked pull
        // crosses loopback and is hashed by the client.
        let push_limit = l
            .sha256_mb_s
            .min(l.fsync_write_mb_s)
            .min(l.loopback_tcp_mb_s);
        let pull_limit = l.sha256_mb_s.min(l.loopback_tcp_mb_s);
        let _ = writeln!(
            out,
            "\nThroughput as a fraction of the machine limit (push: min(SHA-256, fsync write, loopback) = {} MB/s; checked pull: min(SHA-256, loopback) = {} MB/s):\n",
            num(push_limit),
            num(pull_limit)
        );
        let _ = writeln!(out, "| # | workload | berth | peer |");
        let _ = writeln!(out, "|---|---|---|---|");
        for r in rep.results.rows.iter().filter(|r| r.metric == "MB/s") {
            let limit = if r.id == "3" { pull_limit } else { push_limit };
            let frac = |v: &[f64]| {
                Summary::of(v).map_or("—".to_string(), |s| {
                    format!("{:.0}%", 100.0 * s.median / limit)
                })
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.id,
                r.workload,
                frac(&r.berth),
                frac(&r.peer)
            );
        }
    }
    out
}

pub fn write_json(path: &Path, rep: &Report) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(rep).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// Bars from the peer's line at 1 to berth's normalised ratio, per compared metric, on a log
/// scale (right of 1: berth better); a black tick marks the target.
pub fn write_chart(path: &Path, rows: &[Row], subtitle: &str) -> Result<(), String> {
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let rows: Vec<(String, f64, Option<f64>)> = rows
        .into_iter()
        .filter(|r| r.compared && r.id != "0")
        .filter_map(|r| {
            r.ratio().map(|x| {
                (
                    format!("{} {} ({})", r.id, r.workload, r.metric),
                    x,
                    r.target,
                )
            })
        })
        .collect();
    if rows.is_empty() {
        return Err("nothing to chart".into());
    }
    let n = rows.len();
    let all = || rows.iter().flat_map(|(_, x, t)| [Some(*x), *t]).flatten();
    let hi = all().fold(2.0f64, f64::max) * 2.0;
    let lo = all().fold(0.5f64, f64::min) / 1.5;
    let height = 110 + 30 * n as u32;
    let root = SVGBackend::new(path, (1150, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("berth vs {subtitle}: ratio of medians (> 1 = berth better, log scale)"),
            ("sans-serif", 17),
        )
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = rows.iter().map(|(l, _, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            // Labels sit at the bar centres (i + 0.5), counted from the top.
            if (y - y.floor() - 0.5).abs() > 0.01 {
                return String::new();
            }
            let i = (y.floor() as usize).min(n - 1);
            labels.get(n - 1 - i).cloned().unwrap_or_default()
        })
        .x_label_formatter(&|x| format!("{}×", num(*x)))
        .x_desc("berth / peer, normalised")
        .draw()
        .map_err(|e| e.to_string())?;
    let bars = rows.iter().enumerate().map(|(i, (_, x, t))| {
        let y = (n - 1 - i) as f64;
        let colour = match t {
            Some(t) if *x >= *t => RGBColor(46, 139, 87),
            _ if *x >= 1.0 => RGBColor(70, 130, 180),
            _ => RGBColor(205, 92, 92),
        };
        Rectangle::new([(1.0, y + 0.2), (*x, y + 0.8)], colour.filled())
    });
    chart.draw_series(bars).map_err(|e| e.to_string())?;
    let values = rows.iter().enumerate().map(|(i, (_, x, t))| {
        let y = (n - 1 - i) as f64;
        let at = if *x >= 1.0 {
            x.max(t.unwrap_or(0.0)) * 1.04
        } else {
            *x / 1.35
        };
        Text::new(format!("{}×", num(*x)), (at, y + 0.65), ("sans-serif", 13))
    });
    chart.draw_series(values).map_err(|e| e.to_string())?;
    let targets = rows.iter().enumerate().filter_map(|(i, (_, _, t))| {
        let y = (n - 1 - i) as f64;
        t.map(|t| PathElement::new(vec![(t, y + 0.1), (t, y + 0.9)], BLACK.stroke_width(2)))
    });
    chart.draw_series(targets).map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, 0.0), (1.0, n as f64)],
            RGBColor(60, 60, 60).stroke_width(1),
        )))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The chart's subtitle: the peer, the cores, the mode.
pub fn subtitle(peer_version: &str, cores: usize, quick: bool) -> String {
    format!(
        "{peer_version} ({cores} cores{})",
        if quick { ", quick mode" } else { "" }
    )
}

/// Redraws the chart from a results.json written by an earlier run.
pub fn replot(json: &Path, svg: &Path) -> Result<(), String> {
    let text = std::fs::read(json).map_err(|e| format!("{}: {e}", json.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let rows: Vec<Row> =
        serde_json::from_value(v["results"]["rows"].clone()).map_err(|e| e.to_string())?;
    let sub = subtitle(
        v["peer_version"].as_str().unwrap_or("docker-registry"),
        v["cores"].as_u64().unwrap_or(0) as usize,
        v["quick"].as_bool().unwrap_or(false),
    );
    write_chart(svg, &rows, &sub)
}
