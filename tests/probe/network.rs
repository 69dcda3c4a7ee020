//! Commands about the network namespace: interfaces, routes and loopback (`net`), Unix
//! sockets of the host or the daemon (`connect`), and TCP over a veth network (`tcp`).
//!
//! Runs in the workload; connections are closed at once, and `tcp` listens only for the
//! time its caller gives it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::output::{
    errno_name, io_error_name, io_failure, join, nix_failure, read_file, say_ready, verdict,
};
use crate::{sys, Outcome};

/// `net`: interfaces, route counts and whether loopback is up (the network namespace).
pub fn net() -> Outcome {
    // /proc/net/dev has two header lines, then `  name: counters...` per interface.
    let dev = read_file("/proc/net/dev")?;
    let interfaces = dev
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim()));
    println!("interfaces={}", join(interfaces));

    // /proc/net/route has one header line; /proc/net/ipv6_route has none and is absent
    // when IPv6 is disabled. Its last field is the device: a fresh namespace has only
    // routes on `lo` (its own address and the unreachable default).
    let ipv4 = read_file("/proc/net/route")?;
    let ipv4_routes = ipv4
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    println!("ipv4_routes={ipv4_routes}");
    let ipv6 = match fs::read_to_string("/proc/net/ipv6_route") {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_failure("read /proc/net/ipv6_route", e)),
    };
    let ipv6_devices: Vec<&str> = ipv6
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    println!("ipv6_routes={}", ipv6_devices.len());
    let off_lo = ipv6_devices.iter().filter(|&&dev| dev != "lo").count();
    println!("ipv6_non_loopback_routes={off_lo}");

    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| nix_failure("socket(AF_INET, SOCK_DGRAM)", e))?;
    // An interface that cannot be asked about (e.g. no `lo` at all) shows its errno.
    match sys::interface_flags(&sock, "lo") {
        Ok(flags) => println!("lo_up={}", flags & libc::IFF_UP != 0),
        Err(e) => println!("lo_up={}", errno_name(e as i32)),
    }
    Ok(())
}

/// `connect <path|@name>...`: connects a Unix stream socket to each path, or to each
/// abstract name written `@name`, and prints `<target>=ok` or the errno, and
/// `<target>.listed=<true|false>`: whether /proc/net/unix, which lists the sockets of our
/// network namespace, names it. Each connection is closed at once.
pub fn connect(targets: &[OsString]) -> Outcome {
    use nix::sys::socket::{connect, UnixAddr};
    use std::os::fd::AsRawFd;
    if targets.is_empty() {
        return Err("expected at least one path or @name".to_string());
    }
    let listing = read_file("/proc/net/unix")?;
    for target in targets {
        let bytes = target.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name),
            None => UnixAddr::new(bytes),
        }
        .map_err(|e| nix_failure(format!("address {target:?}"), e))?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| nix_failure("socket(AF_UNIX)", e))?;
        let connected = connect(sock.as_raw_fd(), &address);
        let key = target.to_string_lossy();
        println!("{key}={}", verdict(connected));
        // Columns: Num RefCount Protocol Flags Type St Inode Path.
        let listed = listing
            .lines()
            .any(|line| line.split_whitespace().nth(7) == Some(&*key));
        println!("{key}.listed={listed}");
    }
    Ok(())
}

/// `tcp LISTEN_PORT SECONDS [--wait] TARGET...`: listens on `[::]:LISTEN_PORT` (IPv4 and
/// IPv6; port 0 for none), prints `ready`, waits for a line on stdin if `--wait` is
/// given, then connects to each TARGET (`ADDR:PORT`, `[ADDR6]:PORT`, or `gw4:PORT` /
/// `gw6:PORT` for the default gateway of that family), sends `ping`, and prints
/// `<target>.connect=ok|<ERRNO>`, `<target>.ms=<time connect took>`,
/// `<target>.local=<addr>`, `<target>.reply=<line>`.
/// Then answers connections with `pong` until SECONDS have passed since the start, and
/// prints `accepted=<N>`. Connects time out after one second.
pub fn tcp(args: &[OsString]) -> Outcome {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string).ok_or("non-UTF-8 argument"))
        .collect::<Result<_, _>>()?;
    let [port, seconds, rest @ ..] = args.as_slice() else {
        return Err("expected LISTEN_PORT SECONDS [--wait] TARGET...".into());
    };
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| format!("invalid seconds {seconds:?}"))?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let (wait, targets) = match rest {
        [flag, targets @ ..] if flag == "--wait" => (true, targets),
        targets => (false, targets),
    };
    let listener = match port {
        0 => None,
        port => {
            let listener = TcpListener::bind(("::", port))
                .map_err(|e| io_failure(format!("bind [::]:{port}"), e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| io_failure("set_nonblocking", e))?;
            Some(listener)
        }
    };
    say_ready()?;
    if wait {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map_err(|e| io_failure("read stdin", e))?;
    }
    for target in targets {
        let address: SocketAddr = match target.split_once(':') {
            Some(("gw4", port)) => SocketAddr::new(gateway(false)?, port_of(port)?),
            Some(("gw6", port)) => SocketAddr::new(gateway(true)?, port_of(port)?),
            _ => target
                .parse()
                .map_err(|_| format!("invalid target {target:?}"))?,
        };
        let begin = Instant::now();
        let connected = TcpStream::connect_timeout(&address, Duration::from_secs(1));
        println!("{target}.ms={}", begin.elapsed().as_millis());
        match connected {
            Ok(mut stream) => {
                println!("{target}.connect=ok");
                if let Ok(local) = stream.local_addr() {
                    println!("{target}.local={}", local.ip());
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut reply = String::new();
                let _ = stream.write_all(b"ping\n");
                let _ = io::BufRead::read_line(&mut io::BufReader::new(&mut stream), &mut reply);
                println!("{target}.reply={}", reply.trim_end());
            }
            Err(e) => println!("{target}.connect={}", io_error_name(&e)),
        }
    }
    let mut accepted = 0;
    if let Some(listener) = listener {
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    accepted += 1;
                    let _ = stream.write_all(b"pong\n");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(io_failure("accept", e)),
            }
        }
    }
    println!("accepted={accepted}");
    Ok(())
}

/// `udp-from TARGET SOURCE...`: sends one datagram to TARGET (`ADDR:PORT`, or `gw4:PORT`
/// / `gw6:PORT`) from each SOURCE, an address to send from (bound with `IP_FREEBIND`, so
/// it need not be the sandbox's own) or `-` for the sandbox's own; the datagram's text is
/// the SOURCE as given. Prints `<source>.sent=ok|<ERRNO>`.
pub fn udp_from(args: &[OsString]) -> Outcome {
    use nix::sys::socket::{bind, sendto, setsockopt, sockopt, MsgFlags, SockaddrStorage};
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::AsRawFd;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string).ok_or("non-UTF-8 argument"))
        .collect::<Result<_, _>>()?;
    let [target, sources @ ..] = args.as_slice() else {
        return Err("expected TARGET SOURCE...".into());
    };
    let target: SocketAddr = match target.split_once(':') {
        Some(("gw4", port)) => SocketAddr::new(gateway(false)?, port_of(port)?),
        Some(("gw6", port)) => SocketAddr::new(gateway(true)?, port_of(port)?),
        _ => target
            .parse()
            .map_err(|_| format!("invalid target {target:?}"))?,
    };
    let family = if target.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    for source in sources {
        let socket = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| nix_failure("socket", e))?;
        let sent = (|| {
            if source != "-" {
                let address: IpAddr = source.parse().map_err(|_| nix::errno::Errno::EINVAL)?;
                setsockopt(&socket, sockopt::IpFreebind, &true)?;
                bind(
                    socket.as_raw_fd(),
                    &SockaddrStorage::from(SocketAddr::new(address, 0)),
                )?;
            }
            sendto(
                socket.as_raw_fd(),
                source.as_bytes(),
                &SockaddrStorage::from(target),
                MsgFlags::empty(),
            )
        })();
        println!("{source}.sent={}", verdict(sent));
    }
    Ok(())
}

/// `resolve NAME...`: prints `resolv_conf=<its nameserver lines, joined by ,>` and, for
/// each NAME, `<name>=<its addresses, sorted, joined by ,>` or `<name>=<error>`, as
/// the C library's resolver (`getaddrinfo`) finds them.
pub fn resolve(names: &[OsString]) -> Outcome {
    use std::net::ToSocketAddrs;
    let conf = read_file("/etc/resolv.conf")?;
    let servers: Vec<&str> = conf
        .lines()
        .filter(|line| line.starts_with("nameserver"))
        .collect();
    println!("resolv_conf={}", servers.join(","));
    for name in names {
        let name = name.to_string_lossy();
        match (name.as_ref(), 0).to_socket_addrs() {
            Ok(found) => {
                let mut addresses: Vec<String> = found.map(|a| a.ip().to_string()).collect();
                addresses.sort();
                addresses.dedup();
                println!("{name}={}", addresses.join(","));
            }
            Err(e) => println!("{name}=error: {e}"),
        }
    }
    Ok(())
}

/// `udp-ask TARGET...`: sends `ping` from a connected UDP socket to each TARGET (as for
/// `tcp`) and waits up to one second for an answer or an error the network sends back;
/// prints `<target>.answer=<text>|<ERRNO>` and `<target>.ms=<time it took>`.
pub fn udp_ask(targets: &[OsString]) -> Outcome {
    use std::net::{SocketAddr, UdpSocket};
    for target in targets {
        let target = target.to_string_lossy();
        let address: SocketAddr = match target.split_once(':') {
            Some(("gw4", port)) => SocketAddr::new(gateway(false)?, port_of(port)?),
            Some(("gw6", port)) => SocketAddr::new(gateway(true)?, port_of(port)?),
            _ => target
                .parse()
                .map_err(|_| format!("invalid target {target:?}"))?,
        };
        let local: SocketAddr = if address.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(local).map_err(|e| io_failure("bind", e))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| io_failure("set_read_timeout", e))?;
        let begin = Instant::now();
        let answer = socket
            .connect(address)
            .and_then(|()| socket.send(b"ping"))
            .and_then(|_| {
                let mut buf = [0u8; 64];
                socket
                    .recv(&mut buf)
                    .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
            });
        println!("{target}.ms={}", begin.elapsed().as_millis());
        match answer {
            Ok(text) => println!("{target}.answer={text}"),
            Err(e) => println!("{target}.answer={}", io_error_name(&e)),
        }
    }
    Ok(())
}

fn port_of(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| format!("invalid port {text:?}"))
}

/// The next hop of the default route of one family, from `/proc/net/route` (gateway in
/// the third column, as hex of the address's bytes in memory order) or
/// `/proc/net/ipv6_route` (destination, prefix length, ..., next hop in the fifth).
fn gateway(v6: bool) -> Result<std::net::IpAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if !v6 {
        let table = read_file("/proc/net/route")?;
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 2 && fields[1] == "00000000" {
                let raw = u32::from_str_radix(fields[2], 16).map_err(|e| e.to_string())?;
                return Ok(IpAddr::V4(Ipv4Addr::from(raw.to_le_bytes())));
            }
        }
        return Err("no IPv4 default route".into());
    }
    let table = read_file("/proc/net/ipv6_route")?;
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let zero = "0".repeat(32);
        if fields.len() == 10 && fields[0] == zero && fields[1] == "00" && fields[4] != zero {
            let raw = u128::from_str_radix(fields[4], 16).map_err(|e| e.to_string())?;
            return Ok(IpAddr::V6(Ipv6Addr::from(raw)));
        }
    }
    Err("no IPv6 default route".into())
}
