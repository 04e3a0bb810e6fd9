//! The outbound-target policy for addresses an operator or a tenant admin chose (alert
//! webhooks, the SMTP relay): which resolved IPs may be connected to. Pure: callers resolve
//! the name themselves, check **every** address with [`TargetPolicy::check`] and then connect
//! to a vetted address (never resolving again, so DNS rebinding cannot switch the target).
//!
//! Refused unless an allow-list CIDR contains them: loopback, unspecified (`0.0.0.0/8`, `::`),
//! RFC 1918 private, CGNAT (`100.64.0.0/10`), link-local (`169.254.0.0/16` with the cloud
//! metadata address, `fe80::/10`), unique-local (`fc00::/7`), multicast, broadcast, reserved
//! (`240.0.0.0/4`), documentation and benchmarking ranges, and the IPv6 forms that embed one
//! of them (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block, `10.0.0.0/8`, `fd00::/8` or a single address (`/32`, `/128` implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address. Host bits must be zero (`10.1.2.3/8` is refused
    /// as probably a typo).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{text}` is not a CIDR block such as `10.0.0.0/8` or `fd00::/8`")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        let cidr = Self { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}/{prefix}`?",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(self.prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(self.prefix))),
        }
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why `ip` is not a public address, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if a == 0 {
        "unspecified (0.0.0.0/8)"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if a == 100 && (64..128).contains(&b) {
        "carrier-grade NAT (100.64.0.0/10)"
    } else if ip.is_link_local() {
        "link-local (169.254.0.0/16, cloud metadata)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || a >= 240 {
        "reserved (240.0.0.0/4)"
    } else if matches!(
        (a, b, c),
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
    ) || (a == 198 && (b == 18 || b == 19))
    {
        "special-purpose (IETF, documentation or benchmarking)"
    } else {
        return None;
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if segments[0] & 0xfe00 == 0xfc00 {
        "unique-local (fc00::/7)"
    } else if segments[0] & 0xffc0 == 0xfe80 {
        "link-local (fe80::/10)"
    } else if segments[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        "documentation (2001:db8::/32)"
    } else if segments[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated): judge the embedded address.
        return v4_reason(Ipv4Addr::from(u128::from(ip) as u32))
            .or(Some("IPv4-compatible IPv6 (::/96)"));
    } else if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        return v4_reason(Ipv4Addr::from(u128::from(ip) as u32));
    } else if segments[0] == 0x2002 {
        let embedded = (u128::from(ip) >> 80) as u32;
        return v4_reason(Ipv4Addr::from(embedded));
    } else {
        return None;
    })
}

/// Which addresses may be connected to: public ones, and the non-public ones an allow-list
/// block contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    allow: Vec<Cidr>,
}

impl TargetPolicy {
    /// A policy allowing `allow` on top of the public internet.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// Parses an allow list (e.g. `budgets.alert.allow_private_targets`); the error names the
    /// entry's index.
    pub fn parse(allow: &[String]) -> Result<Self, (usize, String)> {
        allow
            .iter()
            .enumerate()
            .map(|(index, text)| Cidr::parse(text).map_err(|e| (index, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// `Ok` when `ip` may be connected to; else why not (`"loopback"`, …).
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        match non_public_reason(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|cidr| cidr.contains(ip)) => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn non_public_ranges_are_refused() {
        for blocked in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.10",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::1",
            "::127.0.0.1",
        ] {
            assert!(
                non_public_reason(ip(blocked)).is_some(),
                "{blocked} should be refused"
            );
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(non_public_reason(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn allow_list_opens_exactly_its_blocks() {
        let policy = TargetPolicy::parse(&["127.0.0.0/8".to_owned(), "fd00::/8".to_owned()])
            .unwrap_or_default();
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("fd00::5")), Ok(()));
        assert_eq!(policy.check(ip("10.0.0.1")), Err("private (RFC 1918)"));
        assert_eq!(policy.check(ip("::1")), Err("loopback"));
        assert_eq!(
            policy.check(ip("169.254.169.254")),
            Err("link-local (169.254.0.0/16, cloud metadata)")
        );
        assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
        assert_eq!(
            TargetPolicy::default().check(ip("127.0.0.1")),
            Err("loopback")
        );
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            Cidr::parse("10.0.0.0/8").map(|c| c.to_string()),
            Ok("10.0.0.0/8".to_owned())
        );
        assert_eq!(
            Cidr::parse("::1").map(|c| c.to_string()),
            Ok("::1/128".to_owned())
        );
        assert!(Cidr::parse("10.1.2.3/8").is_err_and(|e| e.contains("10.0.0.0/8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com/8").is_err());
        assert!(Cidr::parse("0.0.0.0/0").is_ok_and(|c| c.contains(ip("8.8.8.8"))));
        assert_eq!(
            TargetPolicy::parse(&["10.0.0.0/8".to_owned(), "nope".to_owned()]).map(|_| ()),
            Err((
                1,
                "`nope` is not a CIDR block such as `10.0.0.0/8` or `fd00::/8`".to_owned()
            ))
        );
    }
}
