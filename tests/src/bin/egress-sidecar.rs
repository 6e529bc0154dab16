//! A local stand-in for Cloudflare's `proxy-everything` image: the network sidecar `wrangler dev`
//! (workerd) starts beside each Container, which no registry here can serve. The app container
//! shares this sidecar's network namespace, and workerd speaks to it:
//!
//! - **ingress** (`--http-ingress-address`, one request per connection): `CONNECT` with
//!   `X-Dst-Addr: 127.0.0.1:<port>` opens a tunnel to the app's port (400 when nothing listens,
//!   which workerd reads as "not listening yet"); `PUT /egress` hands over the egress settings
//!   (workerd's readiness probe); `GET /ca` must answer a PEM;
//! - **egress**: every TCP connection the container opens, except to loopback and to workerd's
//!   egress port, is redirected here (iptables); its original destination and HTTP `Host` go to
//!   workerd's egress port as `CONNECT <ip:port>` with `X-Hostname`, and workerd decides — allow,
//!   intercept with the Worker's own code, or refuse — by the Container's outbound settings.
//!   Upstream leaves the Docker network alone; this stand-in diverts it too, since production
//!   has no such network and a local shortcut to the host would hide what the Container can reach.
//! - **DNS**: every query (UDP port 53) is answered here, every name with [`RESOLVED_ADDRESS`]:
//!   where a name points does not matter once all traffic is diverted, only its `Host`.
//!
//! TLS interception and DNS filtering by name are not modelled (docs/services.md says what that
//! leaves out).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

/// Where redirected egress connections arrive.
const EGRESS_LISTEN_PORT: u16 = 41209;
/// Where redirected DNS queries arrive.
const DNS_LISTEN_PORT: u16 = 41253;
/// The address every name resolves to (TEST-NET-3: never a real host).
const RESOLVED_ADDRESS: [u8; 4] = [203, 0, 113, 80];
/// The dummy CA certificate `GET /ca` answers (HTTPS interception is not modelled).
const DUMMY_CA: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

struct Settings {
    ingress: String,
    egress_port: AtomicU16,
    iptables: Once,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ingress = "0.0.0.0:39001".to_owned();
    let mut egress_port = 0u16;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--http-ingress-address" => ingress = args.next().unwrap_or(ingress),
            // Not exempted (see above): production has no Docker network.
            "--docker-gateway-cidr" => drop(args.next()),
            "--http-egress-port" => {
                egress_port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            }
            _ => {}
        }
    }
    let settings = Arc::new(Settings {
        ingress,
        egress_port: AtomicU16::new(egress_port),
        iptables: Once::new(),
    });
    // Diverted before any connection exists: rules added under an open connection (workerd's
    // readiness probe) would catch its answers too, and the probe would wait for its timeout.
    if egress_port != 0 {
        settings.iptables.call_once(|| divert_egress(egress_port));
    }
    let egress = {
        let settings = settings.clone();
        std::thread::spawn(move || serve_egress(&settings))
    };
    std::thread::spawn(serve_dns);
    let listener = match TcpListener::bind(&settings.ingress) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("egress-sidecar: cannot listen on {}: {e}", settings.ingress);
            std::process::exit(1);
        }
    };
    eprintln!("egress-sidecar: ingress on {}", settings.ingress);
    for stream in listener.incoming().flatten() {
        let settings = settings.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve_ingress(stream, &settings) {
                eprintln!("egress-sidecar: ingress: {e}");
            }
        });
    }
    let _ = egress.join();
}

/// A request's head: method, target, headers (lowercase names), and the bytes read past it.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(stream: &mut BufReader<TcpStream>) -> std::io::Result<Head> {
    let mut first = String::new();
    stream.read_line(&mut first)?;
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let rest = stream.buffer().to_vec();
    Ok(Head {
        method,
        target,
        headers,
        rest,
    })
}

fn serve_ingress(stream: TcpStream, settings: &Settings) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = read_head(&mut reader)?;
    let mut out = stream;
    match (head.method.as_str(), head.target.as_str()) {
        ("CONNECT", _) => {
            let target = head.header("x-dst-addr").unwrap_or(&head.target).to_owned();
            match TcpStream::connect(&target) {
                Ok(mut app) => {
                    out.write_all(b"HTTP/1.1 200 OK\r\n\r\n")?;
                    app.write_all(&head.rest)?;
                    relay(out, app);
                }
                Err(_) => {
                    out.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")?;
                }
            }
        }
        ("PUT", "/egress") => {
            let length: usize = head
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = head.rest.clone();
            while body.len() < length {
                let mut chunk = vec![0; length - body.len()];
                let n = reader.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            let config: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(port) = config["port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                settings.egress_port.store(port, Ordering::SeqCst);
            }
            eprintln!("egress-sidecar: egress settings {config}");
            out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")?;
            let port = settings.egress_port.load(Ordering::SeqCst);
            settings.iptables.call_once(|| divert_egress(port));
        }
        ("GET", "/ca") => {
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\n\r\n{DUMMY_CA}",
                DUMMY_CA.len()
            );
            out.write_all(answer.as_bytes())?;
        }
        _ => out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")?,
    }
    Ok(())
}

/// Redirects the namespace's outgoing TCP, but to loopback and to workerd's egress port on the
/// host, to the egress listener, and its DNS queries to the DNS listener.
fn divert_egress(workerd_port: u16) {
    let host = workerd_host();
    let rules = [
        "-t nat -N BUGBOT_EGRESS".to_owned(),
        "-t nat -A BUGBOT_EGRESS -d 127.0.0.0/8 -j RETURN".to_owned(),
        format!("-t nat -A BUGBOT_EGRESS -d {host}/32 -p tcp --dport {workerd_port} -j RETURN"),
        format!("-t nat -A BUGBOT_EGRESS -p tcp -j REDIRECT --to-ports {EGRESS_LISTEN_PORT}"),
        "-t nat -A OUTPUT -p tcp -j BUGBOT_EGRESS".to_owned(),
        format!("-t nat -A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports {DNS_LISTEN_PORT}"),
    ];
    for rule in &rules {
        match Command::new("iptables")
            .args(rule.split_whitespace())
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("egress-sidecar: iptables {rule}: {other:?}"),
        }
    }
}

/// The host's address (`host.docker.internal`, which workerd adds to `/etc/hosts`), read from the
/// file: a resolver lookup would also ask DNS for an IPv6 address and wait seconds for no answer.
fn workerd_host() -> std::net::IpAddr {
    std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .any(|n| n == "host.docker.internal")
        })
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(std::net::IpAddr::from([172, 17, 0, 1]))
}

/// Answers every DNS query: an `A` question with [`RESOLVED_ADDRESS`], any other with no record.
fn serve_dns() {
    // Bound to loopback, where REDIRECT sends locally made packets: an answer must leave from the
    // address the query was redirected to, or conntrack cannot map it back to the nameserver's.
    let socket = match std::net::UdpSocket::bind(("127.0.0.1", DNS_LISTEN_PORT)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("egress-sidecar: cannot listen for DNS: {e}");
            return;
        }
    };
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        if let Some(answer) = dns_answer(&buf[..n]) {
            let _ = socket.send_to(&answer, from);
        }
    }
}

/// The answer to one DNS query (RFC 1035 §4.1), or `None` for something that is not one.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..at + 4)?;
    let qtype = u16::from_be_bytes([query[at], query[at + 1]]);
    let a = qtype == 1;
    let mut out = Vec::with_capacity(question.len() + 32);
    out.extend_from_slice(&query[..2]); // id
    out.extend_from_slice(&[0x81, 0x80]); // response, recursion desired and available, no error
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if a {
        // The name by pointer to the question, type A, class IN, TTL 60 s, 4 bytes of address.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&RESOLVED_ADDRESS);
    }
    Some(out)
}

fn serve_egress(settings: &Settings) {
    let listener = match TcpListener::bind(("0.0.0.0", EGRESS_LISTEN_PORT)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("egress-sidecar: cannot listen for egress: {e}");
            return;
        }
    };
    for stream in listener.incoming().flatten() {
        let port = settings.egress_port.load(Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Err(e) = egress(stream, port) {
                eprintln!("egress-sidecar: egress: {e}");
            }
        });
    }
}

/// One diverted connection: ask workerd's egress port for a tunnel to its original destination.
fn egress(mut client: TcpStream, workerd_port: u16) -> std::io::Result<()> {
    let destination = original_destination(&client)?;
    // The first bytes name the host (HTTP `Host`); wait briefly for them.
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut first = vec![0; 16 * 1024];
    let n = client.read(&mut first).unwrap_or(0);
    first.truncate(n);
    client.set_read_timeout(None)?;
    let hostname = String::from_utf8_lossy(&first)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
        })
        .map(|h| h.split(':').next().unwrap_or_default().to_owned());
    let mut upstream = TcpStream::connect((workerd_host(), workerd_port))?;
    let mut connect = format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n");
    if let Some(h) = &hostname {
        connect.push_str(&format!("X-Hostname: {h}\r\n"));
    }
    connect.push_str("\r\n");
    upstream.write_all(connect.as_bytes())?;
    let mut reader = BufReader::new(upstream.try_clone()?);
    let head = read_head(&mut reader)?;
    let status = head.target.as_str(); // `HTTP/1.1 200 OK`: the second word
    if status != "200" && status != "202" {
        eprintln!("egress-sidecar: {destination} ({hostname:?}) refused: {status}");
        return Ok(());
    }
    upstream.write_all(&head.rest)?;
    upstream.write_all(&first)?;
    relay(client, upstream);
    Ok(())
}

/// The address a redirected connection was meant for (`SO_ORIGINAL_DST`).
fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let addr =
        nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::OriginalDst)
            .map_err(std::io::Error::from)?;
    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::from((ip, u16::from_be(addr.sin_port))))
}

/// Copies both ways until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = forward.join();
}
