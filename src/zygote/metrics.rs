//! `serve --metrics ADDR:PORT`: the daemon's counters in Prometheus' text format, served
//! over HTTP/1.0 by a small responder on the daemon's own poll loop (no thread, no
//! runtime: the zygote must stay single-threaded to fork). Each scrape is bounded: at
//! most [`MAX_SCRAPES`] at once, a request of at most [`MAX_REQUEST`] bytes within
//! [`SCRAPE_DEADLINE`], then one response and the connection closes. Runs in the zygote.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::server::Server;
use super::stats::LATENCY_BUCKETS;

/// Scrapes served at once; more wait in the listen queue.
pub const MAX_SCRAPES: usize = 8;
/// The longest request read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a scrape may take, from accept to the last byte sent.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

/// The metrics listener and the scrapes in progress.
pub(super) struct Metrics {
    listener: TcpListener,
    scrapes: HashMap<u64, Scrape>,
    next: u64,
}

/// One scrape: reading its request, then writing its response.
struct Scrape {
    stream: TcpStream,
    request: Vec<u8>,
    /// The response and how much of it is sent.
    response: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

impl Metrics {
    /// Listens on `addr` (non-blocking, close-on-exec as std makes every socket).
    pub(super) fn bind(addr: SocketAddr) -> std::io::Result<Metrics> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Metrics {
            listener,
            scrapes: HashMap::new(),
            next: 0,
        })
    }

    /// The address it listens on.
    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The listener, when there is room for another scrape.
    pub(super) fn accepting(&self) -> Option<BorrowedFd<'_>> {
        (self.scrapes.len() < MAX_SCRAPES).then(|| self.listener.as_fd())
    }

    /// Each scrape's fd and whether it waits to write (else to read).
    pub(super) fn scrapes(&self) -> impl Iterator<Item = (u64, BorrowedFd<'_>, bool)> {
        self.scrapes
            .iter()
            .map(|(&key, s)| (key, s.stream.as_fd(), s.response.is_some()))
    }

    /// The earliest deadline of a scrape in progress.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.values().map(|s| s.deadline).min()
    }

    /// Accepts what the queue holds, up to [`MAX_SCRAPES`] at once.
    pub(super) fn accept(&mut self) {
        while self.scrapes.len() < MAX_SCRAPES {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next += 1;
                    self.scrapes.insert(
                        self.next,
                        Scrape {
                            stream,
                            request: Vec::new(),
                            response: None,
                            deadline: Instant::now() + SCRAPE_DEADLINE,
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot accept a metrics scrape");
                    return;
                }
            }
        }
    }

    /// Drops the scrapes past their deadline.
    pub(super) fn expire(&mut self) {
        let now = Instant::now();
        self.scrapes.retain(|_, s| s.deadline > now);
    }
}

/// What a request asks for: the metrics, or something this responder does not serve.
fn respond(request: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether `request` holds a whole request head.
fn complete(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n")
}

impl Server {
    /// Handles a ready scrape: reads its request, answers it, writes the answer.
    pub(super) fn on_scrape(&mut self, key: u64) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let Some(scrape) = metrics.scrapes.get_mut(&key) else {
            return;
        };
        if scrape.response.is_none() {
            let mut buf = [0u8; 1024];
            loop {
                match scrape.stream.read(&mut buf) {
                    Ok(0) => {
                        metrics.scrapes.remove(&key);
                        return;
                    }
                    Ok(n) => {
                        scrape.request.extend_from_slice(&buf[..n]);
                        if scrape.request.len() > MAX_REQUEST {
                            metrics.scrapes.remove(&key);
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        metrics.scrapes.remove(&key);
                        return;
                    }
                }
            }
            if !complete(&scrape.request) {
                return;
            }
            let request = std::mem::take(&mut scrape.request);
            let response = respond(&request, || self.prometheus_text());
            let Some(scrape) = self.metrics.as_mut().and_then(|m| m.scrapes.get_mut(&key)) else {
                return;
            };
            scrape.response = Some((response, 0));
        }
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let Some(scrape) = metrics.scrapes.get_mut(&key) else {
            return;
        };
        if let Some((response, sent)) = &mut scrape.response {
            loop {
                match scrape.stream.write(&response[*sent..]) {
                    Ok(n) => {
                        *sent += n;
                        if *sent == response.len() {
                            metrics.scrapes.remove(&key);
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(_) => {
                        metrics.scrapes.remove(&key);
                        return;
                    }
                }
            }
        }
    }

    /// The daemon's metrics in Prometheus' text exposition format.
    pub(super) fn prometheus_text(&self) -> String {
        use std::fmt::Write;
        let stats = &self.stats;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let labelled = |label: &str, counts: &std::collections::BTreeMap<&'static str, u64>| {
            counts
                .iter()
                .map(|(name, count)| (format!("{{{label}=\"{name}\"}}"), count.to_string()))
                .collect::<Vec<_>>()
        };
        let one = |value: String| vec![(String::new(), value)];
        family(
            "hatchery_build_info",
            "gauge",
            "The daemon's version.",
            &[(
                format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
                "1".into(),
            )],
        );
        family(
            "hatchery_uptime_seconds",
            "gauge",
            "Seconds since the daemon started serving.",
            &one(format!("{:.3}", stats.started.elapsed().as_secs_f64())),
        );
        family(
            "hatchery_spawns_total",
            "counter",
            "Spawns whose workload started, by how (fresh, warm).",
            &labelled("path", &stats.served),
        );
        family(
            "hatchery_spawn_failures_total",
            "counter",
            "Spawn requests answered with an error, by its kind.",
            &labelled("kind", &stats.failed),
        );
        family(
            "hatchery_sandboxes_ended_total",
            "counter",
            "Sandboxes that ended, by why (oom_killed, wall_timeout and cpu_timeout are limit kills).",
            &labelled("reason", &stats.ended),
        );
        let mut cumulative = 0;
        let mut buckets: Vec<(String, String)> = LATENCY_BUCKETS
            .iter()
            .zip(&stats.latency_buckets)
            .map(|(le, count)| {
                cumulative += count;
                (format!("_bucket{{le=\"{le}\"}}"), cumulative.to_string())
            })
            .collect();
        let total: u64 = stats.latency_buckets.iter().sum();
        buckets.push(("_bucket{le=\"+Inf\"}".into(), total.to_string()));
        buckets.push((
            "_sum".into(),
            format!("{:.6}", stats.latency_sum.as_secs_f64()),
        ));
        buckets.push(("_count".into(), total.to_string()));
        family(
            "hatchery_spawn_latency_seconds",
            "histogram",
            "From a spawn request to its workload's start.",
            &buckets,
        );
        family(
            "hatchery_sandboxes_live",
            "gauge",
            "Sandboxes alive now (warm idle ones not counted).",
            &one(self.children.len().to_string()),
        );
        family(
            "hatchery_warm_pool_idle",
            "gauge",
            "Idle warm-pool sandboxes now.",
            &one(self.zygote.pool.idle().to_string()),
        );
        family(
            "hatchery_warm_pool_hits_total",
            "counter",
            "Poolable spawns an idle sandbox served.",
            &one(stats.pool_hits.to_string()),
        );
        family(
            "hatchery_warm_pool_misses_total",
            "counter",
            "Poolable spawns that started fresh while the daemon keeps a pool.",
            &one(stats.pool_misses.to_string()),
        );
        family(
            "hatchery_veth_leases",
            "gauge",
            "Veth subnets held by sandboxes.",
            &one(self
                .children
                .values()
                .filter(|c| c.network.is_some())
                .count()
                .to_string()),
        );
        family(
            "hatchery_daemon_resident_memory_bytes",
            "gauge",
            "The daemon's own resident memory.",
            &one(super::stats::own_resident_bytes().to_string()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        let ok = String::from_utf8(respond(b"GET /metrics HTTP/1.0\r\n\r\n", || "a 1\n".into()))
            .unwrap();
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(
            ok.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"),
            "{ok}"
        );
        let missing = String::from_utf8(respond(b"GET / HTTP/1.1\r\n\r\n", String::new)).unwrap();
        assert!(missing.starts_with("HTTP/1.0 404 "), "{missing}");
        let post =
            String::from_utf8(respond(b"POST /metrics HTTP/1.0\r\n\r\n", String::new)).unwrap();
        assert!(post.starts_with("HTTP/1.0 405 "), "{post}");
        assert!(complete(b"GET /metrics HTTP/1.0\r\n\r\n") && !complete(b"GET /metrics"));
    }
}
