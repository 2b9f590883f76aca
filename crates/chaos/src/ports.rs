//! Listening ports for local clusters that a restart can always bind
//! again.
//!
//! The kernel gives every outgoing connection a port from its ephemeral
//! range (`/proc/sys/net/ipv4/ip_local_port_range` on Linux). A replica
//! listening on a port in that range can lose it while it is down: some
//! client's or peer's next connection takes the number, and the restarted
//! replica fails with "address in use". So replica ports are chosen below
//! that range.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;

/// Lowest port handed out; below it lie well-known and commonly used ports.
pub const FLOOR: u16 = 20_000;

/// The range to choose listening ports from: [`FLOOR`] up to the start of
/// the ephemeral range, or up to 60,000 if the ephemeral range leaves
/// fewer than 4,096 ports below it.
pub fn listening_range() -> Range<u16> {
    let ephemeral_start = ephemeral_start().unwrap_or(32_768);
    if ephemeral_start >= FLOOR + 4_096 {
        FLOOR..ephemeral_start
    } else {
        FLOOR..60_000
    }
}

/// The first port of the kernel's ephemeral range, if it can be read.
fn ephemeral_start() -> Option<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// True when `count` ports from `base` can all be bound on 127.0.0.1 now.
pub fn all_free(base: u16, count: u16) -> bool {
    (0..count).all(|i| {
        base.checked_add(i).is_some_and(|port| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok())
    })
}

/// A base port with `count` free ports after it on 127.0.0.1, inside
/// [`listening_range`], found by random probes.
pub fn free_ports(count: u16) -> anyhow::Result<u16> {
    let range = listening_range();
    anyhow::ensure!(range.len() > usize::from(count), "no room for {count} ports in {range:?}");
    for _ in 0..1000 {
        let base = rand::random_range(range.start..range.end - count);
        if all_free(base, count) {
            return Ok(base);
        }
    }
    anyhow::bail!("found no {count} free consecutive ports on 127.0.0.1 in {range:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_lie_below_the_ephemeral_range() {
        let range = listening_range();
        assert!(range.start >= FLOOR && range.len() >= 4_096, "{range:?}");
        if let Some(start) = ephemeral_start() {
            if start >= FLOOR + 4_096 {
                assert!(range.end <= start, "{range:?} overlaps the ephemeral ports from {start}");
            }
        }
    }

    #[test]
    fn free_ports_are_bindable_and_in_range() {
        let base = free_ports(6).expect("free ports");
        let range = listening_range();
        assert!(range.contains(&base) && range.contains(&(base + 5)), "{base} outside {range:?}");
    }
}
