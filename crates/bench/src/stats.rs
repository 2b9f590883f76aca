//! Latency histograms ([`Latencies`]) and the figures of one run
//! ([`Figures`]), printed as text or as one JSON line.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records, in microseconds (60 s); higher
/// readings are clamped to it.
const LATENCY_MAX_US: u64 = 60_000_000;

/// One HDR histogram of latencies in microseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds");
        Latencies { histogram }
    }
}

impl Latencies {
    pub fn record(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.clamp(1, LATENCY_MAX_US));
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.histogram.add(&other.histogram).expect("histograms with equal bounds merge");
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0..=1), 0 when empty.
    pub fn at(&self, quantile: f64) -> u64 {
        if self.histogram.is_empty() {
            return 0;
        }
        self.histogram.value_at_quantile(quantile)
    }

    pub fn max(&self) -> u64 {
        self.histogram.max()
    }
}

/// The figures of one run at one client count.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub system: &'static str,
    pub clients: usize,
    /// Sends acknowledged within the measured window.
    pub ops: u64,
    /// Length of the measured window.
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub payload_bytes: usize,
    /// Messages received by connected recipients within the window, and
    /// their send-to-receipt latency.
    pub deliveries: u64,
    pub delivery_p50_us: u64,
    pub delivery_p99_us: u64,
    pub delivery_p999_us: u64,
    /// Sends that failed (timed out or refused) within the window.
    pub errors: u64,
    /// With a leader kill: last acknowledgement before it to the first after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_gap_ms: Option<f64>,
    /// CPU time of all replicas within the window per acknowledged send
    /// (replicas on this machine only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_cpu_us_per_op: Option<f64>,
    /// Resident memory of each replica on this machine after the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replica_rss_mib: Vec<f64>,
    /// Extra clients connected for delivery and idle during the run.
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_clients: usize,
    /// Room mode: members of the one room every send posts to (all
    /// connected; `deliveries` counts what each of them received).
    #[serde(skip_serializing_if = "is_zero")]
    pub room_members: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Figures {
    /// Figures from the merged histograms of every client.
    pub fn new(
        clients: usize,
        payload_bytes: usize,
        seconds: f64,
        acks: &Latencies,
        deliveries: &Latencies,
    ) -> Figures {
        let ops = acks.count();
        Figures {
            system: "chorus",
            clients,
            ops,
            seconds: (seconds * 100.0).round() / 100.0,
            ops_per_s: (ops as f64 / seconds * 10.0).round() / 10.0,
            p50_us: acks.at(0.5),
            p99_us: acks.at(0.99),
            p999_us: acks.at(0.999),
            max_us: acks.max(),
            payload_bytes,
            deliveries: deliveries.count(),
            delivery_p50_us: deliveries.at(0.5),
            delivery_p99_us: deliveries.at(0.99),
            delivery_p999_us: deliveries.at(0.999),
            errors: 0,
            failover_gap_ms: None,
            replica_cpu_us_per_op: None,
            replica_rss_mib: Vec::new(),
            idle_clients: 0,
            room_members: 0,
        }
    }

    /// One line for a human.
    pub fn render(&self) -> String {
        let mut line = format!(
            "clients {:>5}  acks/s {:>9.1}  ack p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>7} us",
            self.clients, self.ops_per_s, self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        if self.room_members > 0 {
            let per_second = (self.deliveries as f64 / self.seconds.max(0.001)).round();
            line += &format!("  room members {}  deliveries/s {per_second}", self.room_members);
        }
        if self.deliveries > 0 {
            line += &format!("  delivery p50 {} us  p99 {} us", self.delivery_p50_us, self.delivery_p99_us);
        }
        if self.errors > 0 {
            line += &format!("  errors {}", self.errors);
        }
        if let Some(gap) = self.failover_gap_ms {
            line += &format!("  failover gap {gap:.1} ms");
        }
        if let Some(cpu) = self.replica_cpu_us_per_op {
            line += &format!("  replica cpu {cpu:.1} us/send");
        }
        if !self.replica_rss_mib.is_empty() {
            line += &format!("  replica rss {:?} MiB", self.replica_rss_mib);
        }
        if self.idle_clients > 0 {
            line += &format!("  idle clients {}", self.idle_clients);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_merge() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for v in 1..=990 {
            a.record(v);
        }
        for _ in 0..10 {
            b.record(1_000_000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1_000);
        assert!((495..=505).contains(&a.at(0.5)));
        assert!(a.at(0.999) >= 999_000);
        assert_eq!(Latencies::default().at(0.5), 0);
    }

    #[test]
    fn json_starts_with_the_fields_the_issue_names() {
        let mut acks = Latencies::default();
        acks.record(900);
        let figures = Figures::new(64, 100, 10.0, &acks, &Latencies::default());
        let json = serde_json::to_string(&figures).unwrap();
        assert!(
            json.starts_with(r#"{"system":"chorus","clients":64,"ops":1,"seconds":10.0,"ops_per_s":0.1,"p50_us":"#),
            "{json}"
        );
    }
}
