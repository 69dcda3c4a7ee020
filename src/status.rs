//! `hatchery status` and `hatchery ps`: ask a daemon about itself and print its answer,
//! as a table or as JSON. Runs in the CLI's process; the daemon decides what the caller
//! may see (its own sandboxes, or every one for root and the daemon's own uid).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use hatchery::client::{default_socket_path, ConnectError, SOCKET_ENV, SYSTEM_SOCKET};
use hatchery::protocol::{Count, DaemonStatus, SandboxStatus};
use hatchery::{error_chain as chain, Client};

use crate::run::{EXIT_HATCHERY, EXIT_NO_DAEMON};

/// The flags of `hatchery status` and `hatchery ps`.
#[derive(Args)]
pub struct StatusArgs {
    /// The daemon's socket [default: $HATCHERY_SOCKET, else as for `serve`, else the
    /// system daemon's /run/hatchery/hatchery.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON (the whole report for `status`, the sandboxes for `ps`).
    #[arg(long)]
    json: bool,
}

/// Which of the two commands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `hatchery status`: the daemon, then its sandboxes.
    Status,
    /// `hatchery ps`: the sandboxes only.
    Ps,
}

/// Asks the daemon and prints its answer; exits 69 when no daemon can be asked, 125 on a
/// failure after connecting.
pub fn main(args: StatusArgs, report: Report) -> ExitCode {
    let path = args.socket.clone().unwrap_or_else(|| {
        let own = default_socket_path();
        let named = std::env::var_os(SOCKET_ENV).is_some_and(|p| !p.is_empty());
        if !named && !own.exists() && std::path::Path::new(SYSTEM_SOCKET).exists() {
            PathBuf::from(SYSTEM_SOCKET)
        } else {
            own
        }
    });
    let client = match Client::connect(&path) {
        Ok(client) => client,
        Err(e @ ConnectError::Unreachable(_)) => {
            eprintln!("hatchery: no daemon at {}: {}", path.display(), chain(&e));
            return ExitCode::from(EXIT_NO_DAEMON);
        }
        Err(e) => {
            eprintln!("hatchery: {}: {}", path.display(), chain(&e));
            return ExitCode::from(EXIT_HATCHERY);
        }
    };
    let status = match client.status() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("hatchery: {}: {}", path.display(), chain(&e));
            return ExitCode::from(EXIT_HATCHERY);
        }
    };
    let text = match (report, args.json) {
        (Report::Status, true) => format!("{:#}\n", status.to_json()),
        (Report::Ps, true) => format!("{:#}\n", status.to_json()["sandboxes"]),
        (Report::Status, false) => format!("{}\n{}", summary(&status), table(&status)),
        (Report::Ps, false) => table(&status),
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// A duration as people read it: `850ms`, `12.3s`, `4m05s`, `3h07m`, `2d04h`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A size in bytes as people read it: `512K`, `12.5M`, `1.2G`.
pub fn human_bytes(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K * K {
        format!("{:.0}K", b / K)
    } else if b < K * K * K {
        format!("{:.1}M", b / K / K)
    } else {
        format!("{:.1}G", b / K / K / K)
    }
}

fn list(counts: &[Count]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|c| format!("{} {}", c.name, c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The daemon's lines of `hatchery status` (and of `hatchery service status`).
pub fn summary(status: &DaemonStatus) -> String {
    let pool = &status.warm_pool;
    let rate = pool.hit_rate().map_or(String::new(), |rate| {
        format!(" ({:.0}% hits)", rate * 100.0)
    });
    let veth = &status.veth;
    let veth = match veth.enabled {
        true => format!(
            "{} leased, {} draining, {} free",
            veth.leased, veth.draining, veth.free
        ),
        false => "off (no --veth-pool)".into(),
    };
    let whose = match status.all_owners {
        true => "every owner's",
        false => "only yours",
    };
    format!(
        "daemon:     {}, pid {}, up {}\n\
         sandboxes:  {} live of at most {} (listed: {whose})\n\
         warm pool:  {} idle ({} per shape, {} shapes); {} hits, {} misses{rate}\n\
         veth:       {veth}\n\
         served:     {}\n\
         failed:     {}\n\
         ended:      {}\n",
        status.version,
        status.pid,
        human_duration(status.uptime_ms),
        status.live,
        status.max_children,
        pool.idle,
        pool.size_per_shape,
        pool.shapes,
        pool.hits,
        pool.misses,
        list(&status.served),
        list(&status.failed),
        list(&status.ended),
    )
}

/// The sandboxes, one line each, under a header.
fn table(status: &DaemonStatus) -> String {
    let rows: Vec<[String; 8]> = status.sandboxes.iter().map(row).collect();
    let header = [
        "SANDBOX", "ID", "PID", "OWNER", "AGE", "MEMORY", "PHASE", "PROGRAM",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if status.sandboxes_omitted > 0 {
        out.push_str(&format!(
            "({} newer sandboxes not listed: the answer holds one message)\n",
            status.sandboxes_omitted
        ));
    }
    out
}

fn row(sandbox: &SandboxStatus) -> [String; 8] {
    [
        sandbox.sandbox.to_string(),
        sandbox.id.to_string(),
        sandbox.pid.to_string(),
        sandbox
            .owner_uid
            .map_or_else(|| "-".into(), |uid| uid.to_string()),
        human_duration(sandbox.age_ms),
        sandbox.memory_bytes.map_or_else(|| "-".into(), human_bytes),
        sandbox.phase.clone(),
        sandbox.program.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(12_345), "12.3s");
        assert_eq!(human_duration(245_000), "4m05s");
        assert_eq!(human_duration(3 * 3_600_000 + 7 * 60_000), "3h07m");
        assert_eq!(human_duration(2 * 86_400_000 + 4 * 3_600_000), "2d04h");
        assert_eq!(human_bytes(512 * 1024), "512K");
        assert_eq!(human_bytes(12 * 1024 * 1024 + 512 * 1024), "12.5M");
        assert_eq!(human_bytes(1288490189), "1.2G");
    }
}
