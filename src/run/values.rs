//! The values of `hatchery run`'s flags that are not limits, parsed with messages in the
//! user's words: the network kind, a layer's name, ids, an MTU. Shared by the flags and
//! the profile file.

use hatchery::protocol::Layer;

/// What `run --net` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Net {
    #[default]
    None,
    Veth,
}

pub fn parse_net(text: &str) -> Result<Net, String> {
    match text {
        "none" => Ok(Net::None),
        "veth" => Ok(Net::Veth),
        _ => Err("expected one of: none, veth".into()),
    }
}

pub fn parse_layer(text: &str) -> Result<Layer, String> {
    Layer::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.iter().map(|layer| layer.name()).collect();
        format!("expected one of: {}", names.join(", "))
    })
}

/// A uid or gid inside the sandbox.
pub fn parse_id(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&id| id != 0 && id != u32::MAX)
        .ok_or_else(|| format!("expected a whole number from 1 to {}", u32::MAX - 1))
}

/// The MTU of a veth pair.
pub fn parse_mtu(text: &str) -> Result<u32, String> {
    text.trim().parse::<u32>().map_err(|_| {
        "expected a whole number of bytes, from 1280 (IPv6's minimum) to 65535".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_mtus_and_layers_say_what_they_take() {
        assert_eq!(parse_id("1000"), Ok(1000));
        assert!(parse_id("-1").unwrap_err().contains("from 1 to"));
        assert!(parse_id("0").is_err());
        assert!(parse_mtu("-5").unwrap_err().contains("1280"));
        assert_eq!(parse_layer("seccomp"), Ok(Layer::Seccomp));
        assert_eq!(
            parse_layer("selinux").unwrap_err(),
            "expected one of: seccomp, network-namespace"
        );
    }
}
