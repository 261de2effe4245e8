//! What `GET /metrics` reports, in Prometheus' text format; no HTTP here (the endpoint and its
//! access rule are in `http::metrics`).
//!
//! Each server has its own [`prometheus::Registry`] rather than the process-wide default, so
//! servers sharing a process (the integration tests) keep separate counts. Labels are bounded
//! sets: routes are endpoint kinds (never a repository, tag or digest), methods the standard
//! ones, statuses three digits.
//!
//! Counters and gauges that other layers move are handed to them as small handles
//! ([`WatchGauges`], [`ImportCounters`], [`ConnectionGauge`]); sizes that cost I/O (metadata
//! on disk, open upload sessions, RSS) are read when scraped, and the blob store's bytes come
//! from counters the store keeps.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Gauges the watch hubs keep current: open watches, and the bytes buffered for them.
#[derive(Clone)]
pub struct WatchGauges {
    pub watchers: IntGauge,
    pub buffered_bytes: IntGauge,
}

impl Default for WatchGauges {
    /// Gauges registered nowhere (hubs outside a server, tests).
    fn default() -> Self {
        WatchGauges {
            watchers: detached_gauge(),
            buffered_bytes: detached_gauge(),
        }
    }
}

/// Import outcomes: every fetch of an image from another registry ends in one of the two.
#[derive(Clone)]
pub struct ImportCounters {
    pub ok: IntCounter,
    pub failed: IntCounter,
}

impl Default for ImportCounters {
    fn default() -> Self {
        let detached = || IntCounter::new("detached", "registered nowhere").expect("valid name");
        ImportCounters {
            ok: detached(),
            failed: detached(),
        }
    }
}

/// Open connections; [`ConnectionGauge::open`] counts one until the guard drops.
#[derive(Clone)]
pub struct ConnectionGauge(IntGauge);

impl ConnectionGauge {
    pub fn open(&self) -> OpenConnection {
        self.0.inc();
        OpenConnection(self.0.clone())
    }
}

pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn detached_gauge() -> IntGauge {
    IntGauge::new("detached", "registered nowhere").expect("valid name")
}

/// Sizes read at scrape time (`None`: unknown, the gauge is left out).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sizes {
    pub open_uploads: Option<u64>,
    pub metadata_disk_bytes: Option<u64>,
    pub blob_bytes: Option<u64>,
    pub data_dir_free_bytes: Option<u64>,
    pub gc: Option<GcSizes>,
}

/// Garbage collection's state as `berth adm gc status` shows it.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcSizes {
    pub pending: u64,
    pub blobs_deleted: u64,
    pub bytes_deleted: u64,
    pub manifests_deleted: u64,
    pub orphans_deleted: u64,
    pub last_run: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    connections: ConnectionGauge,
    watch: WatchGauges,
    imports: ImportCounters,
    open_uploads: IntGauge,
    metadata_disk_bytes: IntGauge,
    blob_bytes: IntGauge,
    data_dir_free_bytes: IntGauge,
    resident_bytes: IntGauge,
    gc: [IntGauge; 6],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let requests = counter_vec(
            "berth_http_requests_total",
            "HTTP requests answered, by route (endpoint kind), method and status.",
            &["route", "method", "status"],
        );
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "berth_http_request_duration_seconds",
                "Time from a request's arrival to its response head (bodies stream after), by \
                 route and method.",
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        let request_bytes = counter_vec(
            "berth_http_request_body_bytes_total",
            "Request body bytes received, by route.",
            &["route"],
        );
        let response_bytes = counter_vec(
            "berth_http_response_body_bytes_total",
            "Response body bytes sent, by route.",
            &["route"],
        );
        let imports = counter_vec(
            "berth_imports_total",
            "Images fetched from other registries, by result (ok, failed).",
            &["result"],
        );
        Metrics {
            requests,
            latency,
            request_bytes,
            response_bytes,
            connections: ConnectionGauge(gauge(
                "berth_http_connections_open",
                "Client connections being served.",
            )),
            watch: WatchGauges {
                watchers: gauge("berth_watches_open", "Open watch requests."),
                buffered_bytes: gauge(
                    "berth_watch_buffered_bytes",
                    "Approximate bytes of watch events held in memory for watchers.",
                ),
            },
            imports: ImportCounters {
                ok: imports.with_label_values(&["ok"]),
                failed: imports.with_label_values(&["failed"]),
            },
            open_uploads: gauge(
                "berth_uploads_open",
                "Blob upload sessions started and not yet finished, cancelled or expired.",
            ),
            metadata_disk_bytes: gauge(
                "berth_metadata_store_disk_bytes",
                "Bytes the metadata store occupies on disk.",
            ),
            blob_bytes: gauge(
                "berth_blob_store_bytes",
                "Bytes of complete blobs in the blob store.",
            ),
            data_dir_free_bytes: gauge(
                "berth_data_dir_free_bytes",
                "Bytes available to berth on the data directory's filesystem.",
            ),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory of the berth process.",
            ),
            gc: [
                gauge(
                    "berth_gc_pending_candidates",
                    "Unreferenced blobs and manifests waiting for their grace period to end.",
                ),
                gauge(
                    "berth_gc_deleted_blobs",
                    "Blobs garbage collection deleted since the store was created.",
                ),
                gauge(
                    "berth_gc_reclaimed_bytes",
                    "Bytes garbage collection freed (blobs and orphan files).",
                ),
                gauge(
                    "berth_gc_deleted_manifests",
                    "Manifests garbage collection deleted.",
                ),
                gauge(
                    "berth_gc_deleted_orphan_files",
                    "Blob files no record named, removed by the sweep.",
                ),
                gauge(
                    "berth_gc_last_run_timestamp_seconds",
                    "When garbage collection last deleted something (Unix seconds).",
                ),
            ],
            registry,
        }
    }

    /// Records one answered request.
    pub fn observe_request(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The counter of request body bytes for `route`.
    pub fn request_bytes(&self, route: &'static str) -> IntCounter {
        self.request_bytes.with_label_values(&[route])
    }

    /// The counter of response body bytes for `route`.
    pub fn response_bytes(&self, route: &'static str) -> IntCounter {
        self.response_bytes.with_label_values(&[route])
    }

    pub fn connections(&self) -> ConnectionGauge {
        self.connections.clone()
    }

    pub fn watch_gauges(&self) -> WatchGauges {
        self.watch.clone()
    }

    pub fn import_counters(&self) -> ImportCounters {
        self.imports.clone()
    }

    /// The exposition text, with the scrape-time sizes filled in.
    pub fn render(&self, sizes: Sizes) -> (String, Vec<u8>) {
        let set = |gauge: &IntGauge, value: Option<u64>| {
            gauge.set(value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        };
        set(&self.open_uploads, sizes.open_uploads);
        set(&self.metadata_disk_bytes, sizes.metadata_disk_bytes);
        set(&self.blob_bytes, sizes.blob_bytes);
        set(&self.data_dir_free_bytes, sizes.data_dir_free_bytes);
        set(&self.resident_bytes, resident_bytes());
        let gc = sizes.gc;
        let gc_values = [
            gc.map(|g| g.pending),
            gc.map(|g| g.blobs_deleted),
            gc.map(|g| g.bytes_deleted),
            gc.map(|g| g.manifests_deleted),
            gc.map(|g| g.orphans_deleted),
            gc.map(|g| g.last_run),
        ];
        for (gauge, value) in self.gc.iter().zip(gc_values) {
            set(gauge, value);
        }
        // An unknown size is left out rather than reported as a number it is not.
        let unknown: Vec<&str> = [
            ("berth_uploads_open", sizes.open_uploads),
            ("berth_metadata_store_disk_bytes", sizes.metadata_disk_bytes),
            ("berth_blob_store_bytes", sizes.blob_bytes),
            ("berth_data_dir_free_bytes", sizes.data_dir_free_bytes),
            ("process_resident_memory_bytes", resident_bytes()),
            ("berth_gc_pending_candidates", gc_values[0]),
            ("berth_gc_deleted_blobs", gc_values[1]),
            ("berth_gc_reclaimed_bytes", gc_values[2]),
            ("berth_gc_deleted_manifests", gc_values[3]),
            ("berth_gc_deleted_orphan_files", gc_values[4]),
            ("berth_gc_last_run_timestamp_seconds", gc_values[5]),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| name)
        .collect();
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| !unknown.contains(&f.name()))
            .collect();
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        if let Err(e) = encoder.encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        (encoder.format_type().to_string(), out)
    }
}

/// Methods outside the standard set share one label value: any token is a valid method, and
/// each would otherwise make a new series.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (307, "307"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (410, "410"),
        (411, "411"),
        (412, "412"),
        (413, "413"),
        (415, "415"),
        (416, "416"),
        (422, "422"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (507, "507"),
    ];
    match CODES.iter().find(|(c, _)| *c == status) {
        Some((_, s)) => s,
        None => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

/// Resident set size of this process (Linux: `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(page).ok().map(|p| pages * p)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(
            method_label(&http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(299), "2xx");
        assert_eq!(status_label(999), "5xx");
    }

    #[test]
    fn renders_text_with_unknown_sizes_left_out() {
        let m = Metrics::new();
        m.observe_request(
            "get_blob",
            &http::Method::GET,
            200,
            Duration::from_millis(3),
        );
        m.request_bytes("patch_upload").inc_by(10);
        let _open = m.connections().open();
        let (content_type, body) = m.render(Sizes {
            open_uploads: Some(2),
            ..Sizes::default()
        });
        let text = String::from_utf8(body).unwrap();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(text.contains(
            "berth_http_requests_total{method=\"GET\",route=\"get_blob\",status=\"200\"} 1"
        ));
        assert!(text.contains("berth_http_request_body_bytes_total{route=\"patch_upload\"} 10"));
        assert!(text.contains("berth_http_connections_open 1"));
        assert!(text.contains("berth_uploads_open 2"));
        assert!(!text.contains("berth_blob_store_bytes"), "{text}");
    }
}
