//! Zygote side: the rtnetlink requests of a veth network, each a short async function
//! run to completion on the daemon's current-thread runtime.
//!
//! Every failure becomes a [`SysError`] naming the request and the interface, e.g.
//! `RTM_NEWLINK veth("hx3"): EEXIST`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::address::AddressFlags;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage, State,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::subnets::{V4_SUBNET, V6_SUBNET};
use crate::sys::SysError;

/// The errno a netlink request failed with (`EIO` when the failure was not the kernel's).
pub fn errno(error: &rtnetlink::Error) -> Errno {
    match error {
        rtnetlink::Error::NetlinkError(message) => Errno::from_raw(-message.raw_code()),
        _ => Errno::EIO,
    }
}

fn failed(op: &str, name: &str, error: rtnetlink::Error) -> SysError {
    SysError::with_path(op, name, errno(&error))
}

/// Creates a veth pair in one request: `host` here, up, and `inside` directly in the
/// network namespace of `pid` (creating it here and moving it would cost ~30 ms). The
/// inside end cannot come up in the same request (the kernel opens it before the pair is
/// linked, and refuses with `ENOTCONN`): see [`set_up`].
pub async fn create_pair(
    handle: &Handle,
    host: &str,
    inside: &str,
    pid: i32,
    mtu: u32,
) -> Result<(), SysError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(inside.to_string())
        .mtu(mtu)
        .setns_by_pid(pid as u32)
        .build();
    let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host.to_string())
        .mtu(mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle
        .link()
        .add(pair)
        .execute()
        .await
        .map_err(|e| failed("RTM_NEWLINK veth", host, e))
}

/// Brings a link up.
pub async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), SysError> {
    let message = LinkUnspec::new_with_index(index).up().build();
    handle
        .link()
        .set(message)
        .execute()
        .await
        .map_err(|e| failed("RTM_SETLINK up", name, e))
}

/// The index of the link named `name`.
pub async fn index_of(handle: &Handle, name: &str) -> Result<u32, SysError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(SysError::with_path("RTM_GETLINK", name, Errno::ENODEV)),
        Err(e) => Err(failed("RTM_GETLINK", name, e)),
    }
}

/// Adds `address/len` to the link; IPv6 addresses skip duplicate address detection (the
/// subnet is ours alone, and a tentative address would hold traffic back for seconds).
async fn add_address(
    handle: &Handle,
    index: u32,
    name: &str,
    address: IpAddr,
    len: u8,
) -> Result<(), SysError> {
    let mut request = handle.address().add(index, address, len);
    if address.is_ipv6() {
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    request
        .execute()
        .await
        .map_err(|e| failed("RTM_NEWADDR", name, e))
}

/// Adds one end's addresses, `/30` and `/126`, both requests in flight at once.
pub async fn add_addresses(
    handle: &Handle,
    index: u32,
    name: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Result<(), SysError> {
    let v4 = async {
        match v4 {
            Some(address) => add_address(handle, index, name, IpAddr::V4(address), V4_SUBNET).await,
            None => Ok(()),
        }
    };
    let v6 = async {
        match v6 {
            Some(address) => add_address(handle, index, name, IpAddr::V6(address), V6_SUBNET).await,
            None => Ok(()),
        }
    };
    futures_util::future::try_join(v4, v6).await.map(drop)
}

/// Adds the default routes via the host end's addresses, both requests in flight at once.
pub async fn add_default_routes(
    handle: &Handle,
    index: u32,
    name: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Result<(), SysError> {
    let v4 = async {
        let Some(gateway) = v4 else { return Ok(()) };
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| failed("RTM_NEWROUTE 0.0.0.0/0", name, e))
    };
    let v6 = async {
        let Some(gateway) = v6 else { return Ok(()) };
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| failed("RTM_NEWROUTE ::/0", name, e))
    };
    futures_util::future::try_join(v4, v6).await.map(drop)
}

/// Whether the link's operational state is up: its carrier is on and the kernel has
/// given it a working queue (before that, the first packets are dropped).
async fn is_up(handle: &Handle, index: u32, name: &str) -> Result<bool, SysError> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))),
        Ok(None) => Err(SysError::with_path("RTM_GETLINK", name, Errno::ENODEV)),
        Err(e) => Err(failed("RTM_GETLINK", name, e)),
    }
}

/// Waits until both ends are operationally up, polling every 100 µs for at most
/// `within`.
pub async fn wait_until_up(
    ends: [(&Handle, u32, &str); 2],
    within: Duration,
) -> Result<(), SysError> {
    let deadline = Instant::now() + within;
    let mut pending = ends.to_vec();
    while !pending.is_empty() {
        let (handle, index, name) = pending[0];
        if is_up(handle, index, name).await? {
            pending.remove(0);
            continue;
        }
        if Instant::now() >= deadline {
            return Err(SysError::with_path(
                "wait for carrier",
                name,
                Errno::ETIMEDOUT,
            ));
        }
        // The daemon's only thread waits here: nothing else is due meanwhile.
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// Deletes a link (for a veth, the whole pair).
pub async fn delete(handle: &Handle, index: u32, name: &str) -> Result<(), SysError> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(|e| failed("RTM_DELLINK", name, e))
}

/// The veth links of this namespace: (index, name).
pub async fn veths(handle: &Handle) -> Result<Vec<(u32, String)>, SysError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| failed("RTM_GETLINK", "*", e))?;
    Ok(links
        .into_iter()
        .filter(is_veth)
        .filter_map(|link| {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })?;
            Some((link.header.index, name))
        })
        .collect())
}

fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}
