//! The Rust client's side of `benches/python_zygote.py`: connects to the daemon at
//! `argv[1]`, then for each line on stdin spawns `/bin/true` with null stdio, waits for
//! its verdict and writes `ok` (or `fail: WHY`). The benchmark times each line's round
//! trip, next to the same spawn through the Python client, to show the Python client's
//! own overhead. Runs in the benchmark's process tree, as a client.

use std::io::{BufRead, Write};

use hatchery::{Client, SpawnRequest, Stdio};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = std::env::args_os()
        .nth(1)
        .ok_or("usage: rust-client-driver SOCKET")?;
    let client = Client::connect(socket)?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        line?;
        let request = SpawnRequest::new("/bin/true")
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null);
        let answer = client
            .spawn_child(request)
            .map_err(|e| e.to_string())
            .and_then(|mut child| child.wait().map_err(|e| e.to_string()));
        match answer {
            Ok(verdict) if verdict.status.success() => writeln!(out, "ok")?,
            Ok(verdict) => writeln!(out, "fail: {:?}", verdict.status)?,
            Err(error) => writeln!(out, "fail: {error}")?,
        }
        out.flush()?;
    }
    Ok(())
}
