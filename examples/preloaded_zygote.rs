//! A zygote that preloads a big table once and serves a `lookup` entry: every child is
//! forked from it, inside the full sandbox, and reads the table for free.
//!
//! ```text
//! cargo run --release --example preloaded_zygote -- --socket /tmp/lookup.sock
//! ```
//! and from a client:
//! ```text
//! let value: Option<u64> = client.call("lookup", &LookupArgs { key: 7 }, SandboxConfig::default())?;
//! ```
//!
//! The table is 1 GiB of `u64`s (`HATCHERY_TABLE_MIB` sets another size), built at
//! start-up into a [`Preloaded`] region: a sealed memfd mapped shared and read-only, so
//! that a fork costs the same whatever its size, and no child can change what the next
//! one sees. With `HATCHERY_TABLE_HEAP=1` it stays in an ordinary `Vec` instead, for
//! comparison (`benches/preload.rs` measures both).
//!
//! `preloaded_zygote cold-lookup KEY` is the cold start the zygote saves: a process that
//! builds the table itself, looks one key up and prints it.

use std::io::Read;
use std::sync::Arc;

use hatchery::{Preloaded, Zygote};
use serde::{Deserialize, Serialize};

/// The arguments of `lookup`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupArgs {
    /// Any key: the table is indexed by `key % len`.
    pub key: u64,
}

/// The table's contents: a well-mixed function of the index (splitmix64), several
/// rounds of it, to stand for state that is costly to compute.
fn cell(index: u64) -> u64 {
    let mut x = index;
    for _ in 0..4 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    x
}

/// The table, wherever it lives.
enum Table {
    Sealed(Preloaded),
    Heap(Vec<u64>),
}

impl Table {
    fn build(bytes: usize, heap: bool) -> Result<Table, hatchery::SysError> {
        let cells = bytes / 8;
        if heap {
            return Ok(Table::Heap((0..cells as u64).map(cell).collect()));
        }
        let table = Preloaded::build("lookup-table", cells * 8, |bytes| {
            for (i, slot) in bytes.chunks_exact_mut(8).enumerate() {
                slot.copy_from_slice(&cell(i as u64).to_ne_bytes());
            }
        })?;
        Ok(Table::Sealed(table))
    }

    fn len(&self) -> u64 {
        match self {
            Table::Sealed(bytes) => bytes.len() as u64 / 8,
            Table::Heap(cells) => cells.len() as u64,
        }
    }

    /// The cell for `key`, or `None` for an empty table.
    fn lookup(&self, key: u64) -> Option<u64> {
        let index = key.checked_rem(self.len())? as usize;
        Some(match self {
            Table::Sealed(bytes) => {
                let at = &bytes[index * 8..index * 8 + 8];
                u64::from_ne_bytes(at.try_into().expect("8 bytes"))
            }
            Table::Heap(cells) => cells[index],
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mib: usize = match std::env::var("HATCHERY_TABLE_MIB") {
        Ok(text) => text.parse()?,
        Err(_) => 1024,
    };
    let heap = std::env::var_os("HATCHERY_TABLE_HEAP").is_some_and(|v| v == "1");
    let mut args = std::env::args().skip(1);
    let cold = args.next().filter(|a| a == "cold-lookup");

    // The preload: runs once.
    let started = std::time::Instant::now();
    let table = Table::build(mib << 20, heap)?;
    if let Some(_command) = cold {
        let key: u64 = args.next().ok_or("cold-lookup KEY")?.parse()?;
        println!("{}", table.lookup(key).ok_or("the table is empty")?);
        return Ok(());
    }
    tracing::info!(mib, heap, elapsed = ?started.elapsed(), "table built");

    let table = Arc::new(table);
    let for_hold = Arc::clone(&table);
    Zygote::builder()
        // `None` only for an empty table (the benchmark's 0-byte baseline).
        .entry(
            "lookup",
            move |args: LookupArgs| -> Result<Option<u64>, String> { Ok(table.lookup(args.key)) },
        )
        // Looks a key up, says so, and holds on until stdin closes: for measuring what
        // many children at once cost.
        .entry("hold", move |args: LookupArgs| -> Result<u64, String> {
            let value = for_hold.lookup(args.key).unwrap_or(0);
            println!("ready");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            Ok(value)
        })
        .serve_from_args()?;
    Ok(())
}
