//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! One [`Metrics`] per server, shared by the HTTP layer (requests by route
//! and status), the GraphQL layer (operation latency, errors by code, open
//! subscriptions) and read from the store at scrape time (events committed,
//! from which `rate()` gives events per second).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    graphql_duration: Histogram,
    graphql_errors: Family<Labels, Counter>,
    subscriptions: Gauge<i64, AtomicI64>,
    devices_connected: Gauge<i64, AtomicI64>,
    device_connects: Family<Labels, Counter>,
    device_messages: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("twingraph");
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        // 50 µs .. ~1.6 s.
        let graphql_duration = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "graphql_request_duration_seconds",
            "Time to execute a GraphQL request",
            graphql_duration.clone(),
        );
        let graphql_errors = Family::<Labels, Counter>::default();
        registry.register(
            "graphql_errors",
            "GraphQL errors by extensions.code",
            graphql_errors.clone(),
        );
        let subscriptions = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "subscriptions_active",
            "Open GraphQL subscription streams",
            subscriptions.clone(),
        );
        let devices_connected = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "devices_connected",
            "Devices connected to this server's MQTT endpoint",
            devices_connected.clone(),
        );
        let device_connects = Family::<Labels, Counter>::default();
        registry.register(
            "device_connects",
            "MQTT connection attempts by outcome (accepted, refused)",
            device_connects.clone(),
        );
        let device_messages = Family::<Labels, Counter>::default();
        registry.register(
            "device_messages",
            "Messages from devices by kind (telemetry, reported, twin_get, method_answer) and outcome (ok, refused)",
            device_messages.clone(),
        );
        Metrics {
            registry,
            http_requests,
            graphql_duration,
            graphql_errors,
            subscriptions,
            devices_connected,
            device_connects,
            device_messages,
        }
    }
}

impl Metrics {
    pub fn http_request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn graphql_request(&self, seconds: f64, error_codes: &[String]) {
        self.graphql_duration.observe(seconds);
        for code in error_codes {
            self.graphql_errors
                .get_or_create(&vec![("code", code.clone())])
                .inc();
        }
    }

    /// Counts an open subscription until the guard drops.
    pub fn subscription(self: &std::sync::Arc<Self>) -> SubscriptionGuard {
        self.subscriptions.inc();
        SubscriptionGuard(self.clone())
    }

    /// Counts a connected device until the guard drops.
    pub fn device_connected(self: &std::sync::Arc<Self>) -> DeviceGuard {
        self.devices_connected.inc();
        self.device_connects
            .get_or_create(&vec![("outcome", "accepted".to_owned())])
            .inc();
        DeviceGuard(self.clone())
    }

    /// Counts a refused device connection.
    pub fn device_refused(&self) {
        self.device_connects
            .get_or_create(&vec![("outcome", "refused".to_owned())])
            .inc();
    }

    /// Counts a message from a device.
    pub fn device_message(&self, kind: &'static str, ok: bool) {
        self.device_messages
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("outcome", if ok { "ok" } else { "refused" }.to_owned()),
            ])
            .inc();
    }

    /// The exposition text; `events_committed` is the store's last
    /// sequence number, `pools` its sets of database connections (none for
    /// the embedded store).
    pub fn render(&self, events_committed: u64, pools: &[ConnectionCounts]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        let mut body = out.trim_end_matches("# EOF\n").to_owned();
        let _ = write!(
            body,
            "# HELP twingraph_events_committed Events committed to the store.\n\
             # TYPE twingraph_events_committed counter\n\
             twingraph_events_committed_total {events_committed}\n"
        );
        if !pools.is_empty() {
            body.push_str(
                "# HELP twingraph_store_connections Database connections per kind of work: at most (size) and lent now (lent).\n\
                 # TYPE twingraph_store_connections gauge\n",
            );
            for p in pools {
                let kind = p.purpose;
                let _ = writeln!(
                    body,
                    "twingraph_store_connections{{kind=\"{kind}\",state=\"size\"}} {}",
                    p.size
                );
                let _ = writeln!(
                    body,
                    "twingraph_store_connections{{kind=\"{kind}\",state=\"lent\"}} {}",
                    p.lent
                );
            }
            let counters: [(&str, &str, Count); 3] = [
                (
                    "store_connections_opened",
                    "Database connections made.",
                    |p| p.opened,
                ),
                (
                    "store_connections_dropped",
                    "Database connections closed because their exchange did not end (budget spent, connection broken, session ended by the database).",
                    |p| p.dropped,
                ),
                (
                    "store_statements_abandoned",
                    "Statements whose request left before the answer (each read to its end, or stopped at its budget).",
                    |p| p.abandoned,
                ),
            ];
            for (name, help, count) in counters {
                let _ = write!(
                    body,
                    "# HELP twingraph_{name} {help}\n# TYPE twingraph_{name} counter\n"
                );
                for p in pools {
                    let _ = writeln!(
                        body,
                        "twingraph_{name}_total{{kind=\"{}\"}} {}",
                        p.purpose,
                        count(p)
                    );
                }
            }
        }
        body.push_str("# EOF\n");
        body
    }
}

/// One counter of [`ConnectionCounts`].
type Count = fn(&ConnectionCounts) -> u64;

/// The counts of one set of a store's database connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// What they are for: `reads`, `writes`, `tailer`.
    pub purpose: &'static str,
    /// Connections at most.
    pub size: usize,
    /// Connections lent right now.
    pub lent: usize,
    /// Connections made so far.
    pub opened: u64,
    /// Connections closed because their exchange did not end.
    pub dropped: u64,
    /// Exchanges whose caller left before the answer (each finished or
    /// stopped on its own).
    pub abandoned: u64,
}

/// Keeps a subscription counted while alive.
#[derive(Debug)]
pub struct SubscriptionGuard(std::sync::Arc<Metrics>);

/// A connected device, counted until dropped.
#[derive(Debug)]
pub struct DeviceGuard(std::sync::Arc<Metrics>);

impl Drop for DeviceGuard {
    fn drop(&mut self) {
        self.0.devices_connected.dec();
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}
