//! Prometheus metrics: requests, latency, bytes served, uploads stored and refused, bytes stored,
//! uploads in progress, free space per collection folder.
//!
//! Labels stay bounded: a collection label is a configured collection or `-`, a method one of
//! the methods the service answers or `OTHER`. Nothing here walks the folders: free space is one
//! `statvfs` per collection at scrape time.
//!
//! Each label value is made once, when the metrics are created, and shared: recording a request
//! allocates nothing.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use actix_web::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::storage::Collection;

/// A collection's name as a label value, or `-` for a path outside every collection.
type Label = Arc<String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    collection: Label,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabel {
    collection: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    collection: Label,
    reason: &'static str,
}

/// Every metric of the service, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    bytes_served: Family<CollectionLabel, Counter>,
    uploads_stored: Family<CollectionLabel, Counter>,
    uploads_refused: Family<RefusalLabels, Counter>,
    bytes_stored: Family<CollectionLabel, Counter>,
    uploads_in_progress: Gauge,
    free_bytes: Family<CollectionLabel, Gauge<u64, AtomicU64>>,
    /// One label per configured collection, then `-`.
    labels: Vec<Label>,
}

impl Metrics {
    /// The metrics of a server with these collections.
    pub fn new<'a>(collections: impl IntoIterator<Item = &'a str>) -> Self {
        let labels = collections
            .into_iter()
            .chain(["-"])
            .map(|name| Arc::new(name.to_owned()))
            .collect();
        let mut registry = Registry::with_prefix("botilyx_media");
        let requests = Family::default();
        // 0.5 ms to about 16 s.
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let bytes_served = Family::default();
        let uploads_stored = Family::default();
        let uploads_refused = Family::default();
        let bytes_stored = Family::default();
        let uploads_in_progress = Gauge::default();
        let free_bytes = Family::default();

        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response head",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register_with_unit(
            "served",
            "Body bytes sent for stored files",
            Unit::Bytes,
            bytes_served.clone(),
        );
        registry.register("uploads_stored", "Files stored", uploads_stored.clone());
        registry.register(
            "uploads_refused",
            "Upload requests refused or failed, by error code",
            uploads_refused.clone(),
        );
        registry.register_with_unit(
            "stored",
            "Bytes of files stored",
            Unit::Bytes,
            bytes_stored.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Upload requests being received now",
            uploads_in_progress.clone(),
        );
        registry.register_with_unit(
            "collection_free",
            "Bytes free to this process on each collection's file system",
            Unit::Bytes,
            free_bytes.clone(),
        );

        Metrics {
            registry,
            requests,
            duration,
            bytes_served,
            uploads_stored,
            uploads_refused,
            bytes_stored,
            uploads_in_progress,
            free_bytes,
            labels,
        }
    }

    /// The label of `collection`: its own when it is configured, `-` for anything else, so the
    /// label set stays bounded whatever a client asks for.
    fn label(&self, collection: &str) -> CollectionLabel {
        let found = self.labels.iter().find(|l| l.as_str() == collection);
        CollectionLabel {
            collection: Arc::clone(found.unwrap_or(&self.labels[self.labels.len() - 1])),
        }
    }

    /// Records one answered request; `collection` is the first segment of its path.
    pub fn observe_request(
        &self,
        collection: &str,
        method: &Method,
        status: u16,
        body_bytes: u64,
        seconds: f64,
    ) {
        let label = self.label(collection);
        self.duration.observe(seconds);
        if label.collection.as_str() != "-"
            && (status == 200 || status == 206)
            && method == Method::GET
        {
            self.bytes_served.get_or_create(&label).inc_by(body_bytes);
        }
        self.requests
            .get_or_create(&RequestLabels {
                collection: label.collection,
                method: method_label(method),
                status,
            })
            .inc();
    }

    /// Counts an upload as in progress until the guard is dropped (also when the client leaves).
    pub fn upload_started(&self) -> InProgress<'_> {
        self.uploads_in_progress.inc();
        InProgress(&self.uploads_in_progress)
    }

    pub fn upload_stored(&self, collection: &str, bytes: u64) {
        let label = self.label(collection);
        self.uploads_stored.get_or_create(&label).inc();
        self.bytes_stored.get_or_create(&label).inc_by(bytes);
    }

    pub fn upload_refused(&self, collection: &str, reason: &'static str) {
        self.uploads_refused
            .get_or_create(&RefusalLabels {
                collection: self.label(collection).collection,
                reason,
            })
            .inc();
    }

    /// The Prometheus text exposition, with free space read now.
    pub fn render<'a>(&self, collections: impl Iterator<Item = &'a Collection>) -> String {
        for collection in collections {
            if let Some(free) = crate::folder_check::free_bytes(&collection.dir) {
                self.free_bytes
                    .get_or_create(&self.label(&collection.name))
                    .set(free);
            }
        }
        let mut out = String::new();
        // NOTE: writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-progress gauge when dropped.
pub struct InProgress<'a>(&'a Gauge);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
