//! One HTTP/1.1 request over a plain TCP connection, for the stores' status ports and PD's API
//! (both close the connection after one answer). Every step is bounded by the timeout, so a
//! paused or partitioned process cannot hang the nemesis.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};

/// Largest answer read (status answers are small; metrics are not read here).
const RESPONSE_BYTES_MAX: u64 = 1 << 20;

/// Sends `method path` with `body` to `addr`; returns the status code and the body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let sock: SocketAddr = addr.parse().with_context(|| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.take(RESPONSE_BYTES_MAX).read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP answer"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    Ok((code, body.to_owned()))
}
