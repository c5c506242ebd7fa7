//! The cache's firewall (`cacheplane-firewall`): the address ranges clients may connect
//! from, as Azure's firewall rules give them. No range means every address may connect;
//! with ranges, a connection from outside all of them is closed as soon as it is
//! accepted, before any TLS handshake or command (Azure refuses it at the network).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Most ranges one firewall holds (Azure allows far fewer rules per cache).
pub const FIREWALL_RANGES_MAX: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firewall {
    /// Inclusive `(start, end)` ranges, both of one address family.
    ranges: Vec<(IpAddr, IpAddr)>,
}

/// The firewall a node's accept loop reads, replaced whole by CONFIG SET.
pub type FirewallGate = Arc<RwLock<Firewall>>;

/// An IPv4 client reaching an IPv6 socket shows up as `::ffff:a.b.c.d`: compare it as
/// the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Firewall {
    /// Parses `start-end start-end ...` (a single address is a range of one); empty: open.
    pub fn parse(text: &str) -> Result<Firewall, String> {
        let mut ranges = Vec::new();
        for item in text.split_whitespace() {
            if ranges.len() == FIREWALL_RANGES_MAX {
                return Err(format!("more than {FIREWALL_RANGES_MAX} ranges"));
            }
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let parse = |s: &str| {
                s.parse::<IpAddr>()
                    .map(canonical)
                    .map_err(|_| format!("'{s}' is not an IP address"))
            };
            let (start, end) = (parse(a)?, parse(b)?);
            if start.is_ipv4() != end.is_ipv4() || start > end {
                return Err(format!("'{item}' is not a range: start-end, start <= end"));
            }
            ranges.push((start, end));
        }
        Ok(Firewall { ranges })
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.ranges.is_empty()
            || self
                .ranges
                .iter()
                .any(|(s, e)| s.is_ipv4() == ip.is_ipv4() && *s <= ip && ip <= *e)
    }

    /// As CONFIG GET shows it (what `parse` reads).
    pub fn render(&self) -> String {
        self.ranges
            .iter()
            .map(|(s, e)| format!("{s}-{e}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_ranges_lets_everyone_in_and_ranges_only_their_own() {
        assert!(Firewall::default().allows(ip("203.0.113.9")));
        let f = Firewall::parse("10.0.0.1-10.0.0.255  192.168.1.7").unwrap();
        assert!(f.allows(ip("10.0.0.1")) && f.allows(ip("10.0.0.255")));
        assert!(f.allows(ip("192.168.1.7")) && !f.allows(ip("192.168.1.8")));
        assert!(!f.allows(ip("127.0.0.1")) && !f.allows(ip("10.0.1.0")));
        assert!(f.allows(ip("::ffff:10.0.0.9")), "IPv4 on an IPv6 socket");
        assert!(!f.allows(ip("::1")));
        assert_eq!(Firewall::parse(&f.render()).unwrap(), f);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["10.0.0.9-10.0.0.1", "nonsense", "10.0.0.1-::1", "1.2.3.4-"] {
            assert!(Firewall::parse(bad).is_err(), "{bad}");
        }
        let many = vec!["1.1.1.1"; FIREWALL_RANGES_MAX + 1].join(" ");
        assert!(Firewall::parse(&many).is_err());
    }
}
