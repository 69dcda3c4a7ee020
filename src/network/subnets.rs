//! The veth subnets: the address ranges a daemon is given ([`Cidr`], `--veth-pool`) and
//! the pool that cuts one IPv4 and/or one IPv6 range into point-to-point subnets (a /30
//! and a /126), one per networked sandbox ([`SubnetPool`]).
//!
//! Runs in the zygote, which alone hands subnets out and takes them back, on its one
//! thread: pure bookkeeping, no I/O and no lock, unit-tested without a daemon.
//!
//! A subnet goes back to the pool only when the daemon says so, which it does once the
//! sandbox's pair is gone (see [`super::Network::collect`]), never at the reap: reusing a
//! subnet while the previous pair is still being torn down stalls traffic for seconds.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Prefix length of a sandbox's IPv4 subnet: network, host end, sandbox end, broadcast.
pub const V4_SUBNET: u8 = 30;
/// Prefix length of a sandbox's IPv6 subnet: four addresses, as for IPv4.
pub const V6_SUBNET: u8 = 126;
/// The most subnets a pool hands out, whatever its size (the free list is kept in memory).
pub const MAX_SLOTS: u32 = 1 << 16;

/// An address range, `10.213.0.0/16` or `fd68:6174:6368::/48`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The first address of the range (its host bits are zero).
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

/// Why a range cannot be read or a pool cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetPoolError {
    /// Not `ADDRESS/LENGTH`.
    #[error("{0:?} is not ADDRESS/LENGTH")]
    Syntax(String),
    /// Host bits are set, so the range is ambiguous.
    #[error("{0} has host bits set (the range starts at {1})")]
    HostBits(String, IpAddr),
    /// Too small to hold even one subnet.
    #[error("{0} is too small: a sandbox takes a /{1}")]
    TooSmall(Cidr, u8),
    /// Two ranges of one family.
    #[error("at most one IPv4 and one IPv6 range; got two {0} ranges")]
    TwoOfAKind(&'static str),
    /// No range at all.
    #[error("the pool needs an IPv4 or an IPv6 range")]
    Empty,
}

impl FromStr for Cidr {
    type Err = SubnetPoolError;

    /// An address and a prefix length, e.g. `10.213.0.0/16`; the address must be the
    /// range's first (`10.213.0.1/16` is refused).
    fn from_str(text: &str) -> Result<Cidr, SubnetPoolError> {
        let syntax = || SubnetPoolError::Syntax(text.to_string());
        let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err(syntax());
        }
        let start = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
        };
        if start != addr {
            return Err(SubnetPoolError::HostBits(text.to_string(), start));
        }
        Ok(Cidr { addr, len })
    }
}

impl Cidr {
    /// Whether `address` is in the range (an address of the other family never is).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.addr, address) {
            (IpAddr::V4(start), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.len) == u32::from(start)
            }
            (IpAddr::V6(start), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.len) == u128::from(start)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// One sandbox's addresses: the host end and the sandbox end of each family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Its place in the pool.
    pub slot: u32,
    /// Host end and sandbox end, in a /30.
    pub v4: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Host end and sandbox end, in a /126.
    pub v6: Option<(Ipv6Addr, Ipv6Addr)>,
}

/// The subnet pool: its ranges and the slots not in use, least recently freed first.
#[derive(Debug)]
pub struct SubnetPool {
    v4: Option<u32>,
    v6: Option<u128>,
    free: VecDeque<u32>,
}

impl SubnetPool {
    /// A pool over at most one IPv4 and one IPv6 range. With both, the pool has as many
    /// slots as the smaller range. Slots are handed out from `first` on (wrapping), so
    /// that pools of two processes over the same ranges start apart.
    /// A /29 holds two point-to-point /30s: the first is `10.9.0.1` (host end) and
    /// `10.9.0.2` (sandbox end).
    pub fn new(ranges: &[Cidr], first: u32) -> Result<SubnetPool, SubnetPoolError> {
        let mut v4 = None;
        let mut v6 = None;
        let mut slots = MAX_SLOTS;
        for range in ranges {
            let subnet = if range.addr.is_ipv4() {
                V4_SUBNET
            } else {
                V6_SUBNET
            };
            if range.len > subnet {
                return Err(SubnetPoolError::TooSmall(*range, subnet));
            }
            let exponent = u32::from(subnet - range.len);
            slots = slots.min(if exponent >= 16 {
                MAX_SLOTS
            } else {
                1 << exponent
            });
            match range.addr {
                IpAddr::V4(a) if v4.is_none() => v4 = Some(u32::from(a)),
                IpAddr::V6(a) if v6.is_none() => v6 = Some(u128::from(a)),
                IpAddr::V4(_) => return Err(SubnetPoolError::TwoOfAKind("IPv4")),
                IpAddr::V6(_) => return Err(SubnetPoolError::TwoOfAKind("IPv6")),
            }
        }
        if v4.is_none() && v6.is_none() {
            return Err(SubnetPoolError::Empty);
        }
        let first = first % slots;
        let free = (first..slots).chain(0..first).collect();
        Ok(SubnetPool { v4, v6, free })
    }

    /// How many are free.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Takes the least recently freed subnet; `None` when all are in use.
    pub fn allocate(&mut self) -> Option<Subnet> {
        let slot = self.free.pop_front()?;
        let offset = 4 * slot;
        Some(Subnet {
            slot,
            v4: self.v4.map(|base| {
                let net = base + offset;
                (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2))
            }),
            v6: self.v6.map(|base| {
                let net = base + u128::from(offset);
                (Ipv6Addr::from(net + 1), Ipv6Addr::from(net + 2))
            }),
        })
    }

    /// Gives a subnet back. The caller must be sure that nothing uses it any more.
    pub fn release(&mut self, subnet: Subnet) {
        debug_assert!(!self.free.contains(&subnet.slot), "subnet freed twice");
        self.free.push_back(subnet.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects_ranges() {
        assert_eq!(cidr("10.0.0.0/8").len, 8);
        assert_eq!(cidr("fd00::/64").addr, "fd00::".parse::<IpAddr>().unwrap());
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "x/8",
            "fd00::/129",
            "10.0.0.0/-1",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(SubnetPoolError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "10.0.0.4/29".parse::<Cidr>(),
            Err(SubnetPoolError::HostBits(_, _))
        ));
    }

    #[test]
    fn refuses_pools_that_make_no_sense() {
        assert_eq!(SubnetPool::new(&[], 0).unwrap_err(), SubnetPoolError::Empty);
        assert!(matches!(
            SubnetPool::new(&[cidr("10.0.0.0/31")], 0),
            Err(SubnetPoolError::TooSmall(_, 30))
        ));
        assert!(matches!(
            SubnetPool::new(&[cidr("fd00::/127")], 0),
            Err(SubnetPoolError::TooSmall(_, 126))
        ));
        assert_eq!(
            SubnetPool::new(&[cidr("10.0.0.0/24"), cidr("10.1.0.0/24")], 0).unwrap_err(),
            SubnetPoolError::TwoOfAKind("IPv4")
        );
    }

    #[test]
    fn a_range_must_start_at_its_first_address() {
        let parsed: Cidr = "10.213.0.0/16".parse().unwrap();
        assert_eq!(parsed.len, 16);
        assert!("10.213.0.1/16".parse::<Cidr>().is_err());
    }

    #[test]
    fn a_slash_29_holds_two_point_to_point_subnets() {
        let mut pool = SubnetPool::new(&[cidr("10.9.0.0/29")], 0).unwrap();
        assert_eq!(pool.free(), 2);
        let first = pool.allocate().unwrap();
        assert_eq!(first.v4.unwrap().0.to_string(), "10.9.0.1");
        assert_eq!(first.v4.unwrap().1.to_string(), "10.9.0.2");
    }

    #[test]
    fn cuts_point_to_point_subnets_of_both_families() {
        let mut pool = SubnetPool::new(&[cidr("10.9.0.0/24"), cidr("fd00:1::/120")], 0).unwrap();
        // 64 /30s in the /24, 64 /126s in the /120.
        assert_eq!(pool.free(), 64);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_eq!(
            a.v4,
            Some(("10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap()))
        );
        assert_eq!(
            b.v4,
            Some(("10.9.0.5".parse().unwrap(), "10.9.0.6".parse().unwrap()))
        );
        assert_eq!(
            b.v6,
            Some(("fd00:1::5".parse().unwrap(), "fd00:1::6".parse().unwrap()))
        );
        let last = (2..64).map(|_| pool.allocate().unwrap()).last().unwrap();
        assert_eq!(
            last.v4.unwrap().1,
            "10.9.0.254".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn the_smaller_range_sets_the_size_and_big_ones_are_capped() {
        let pool = SubnetPool::new(&[cidr("10.0.0.0/8"), cidr("fd00::/120")], 0).unwrap();
        assert_eq!(pool.free(), 64);
        let pool = SubnetPool::new(&[cidr("10.0.0.0/8")], 0).unwrap();
        assert_eq!(pool.free(), MAX_SLOTS as usize);
        let pool = SubnetPool::new(&[cidr("fd00::/48")], 0).unwrap();
        assert_eq!(pool.free(), MAX_SLOTS as usize);
    }

    #[test]
    fn exhaustion_is_none_and_freed_slots_come_back_last() {
        let mut pool = SubnetPool::new(&[cidr("10.9.0.0/28")], 0).unwrap();
        let taken: Vec<Subnet> = (0..4).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(pool.allocate(), None);
        pool.release(taken[1]);
        pool.release(taken[0]);
        assert_eq!(pool.allocate().unwrap().slot, 1);
        assert_eq!(pool.allocate().unwrap().slot, 0);
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn a_first_slot_offsets_and_wraps() {
        let mut pool = SubnetPool::new(&[cidr("10.9.0.0/28")], 6).unwrap();
        let slots: Vec<u32> = (0..4).map(|_| pool.allocate().unwrap().slot).collect();
        assert_eq!(slots, vec![2, 3, 0, 1]);
    }
}
