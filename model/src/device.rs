use std::fmt;

use crate::error::{ModelError, invalid};

/// A device as the cluster knows it: `host:port`. Pinned jobs are placed, queued and
/// supervised under this key; it is built here and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    host: String,
    port: u16,
}

impl DeviceKey {
    /// `host` is trimmed; `port` 0 means 22. `field` names the connection in messages.
    pub fn new(field: &str, host: &str, port: u32) -> Result<Self, ModelError> {
        let trimmed = host.trim();
        if trimmed.is_empty() || trimmed.len() > 253 || trimmed.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "{field}.host must be a host name or address (1..=253 characters, no spaces), got {host:?}"
            )));
        }
        let port = match port {
            0 => 22,
            p @ 1..=65535 => p as u16,
            p => {
                return Err(invalid(format!(
                    "{field}.port must be 1..=65535 (0 for 22), got {p}"
                )));
            }
        };
        Ok(DeviceKey {
            host: trimmed.to_string(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for DeviceKey {
    type Err = ModelError;

    /// `host:port` (the last colon splits, so an IPv6 address keeps its own).
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("a device is host:port, got {s:?}")))?;
        let port = port
            .parse::<u32>()
            .map_err(|_| invalid(format!("a device is host:port, got {s:?}")))?;
        DeviceKey::new("device", host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn port_zero_is_22_and_the_host_is_trimmed() {
        let k = DeviceKey::new("connection", " 192.0.2.1 ", 0).unwrap();
        assert_eq!(k.to_string(), "192.0.2.1:22");
        assert_eq!(
            DeviceKey::new("connection", "h", 70_000)
                .unwrap_err()
                .to_string(),
            "connection.port must be 1..=65535 (0 for 22), got 70000"
        );
        assert!(DeviceKey::new("connection", "a b", 22).is_err());
        assert!(DeviceKey::new("connection", "", 22).is_err());
        assert_eq!("::1:830".parse::<DeviceKey>().unwrap().host(), "::1");
        assert!("nohost".parse::<DeviceKey>().is_err());
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(host in "[a-z0-9.:-]{1,40}", port in 1u32..=65535) {
            let k = DeviceKey::new("c", &host, port).unwrap();
            prop_assert_eq!(k.to_string().parse::<DeviceKey>().unwrap(), k);
        }
    }
}
