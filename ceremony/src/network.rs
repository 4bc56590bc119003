//! The air-gap check: the ceremony refuses to run while any non-loopback network interface
//! is up. The decision is a pure function over a listing of interfaces ([`online`]); the
//! listing comes from `/sys/class/net/*/{operstate,flags}` ([`read_sys_class_net`]).

use std::path::Path;

use crate::error::CeremonyError;

/// `IFF_UP` from `<linux/if.h>`: the interface is administratively up.
const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK` from `<linux/if.h>`.
const IFF_LOOPBACK: u32 = 0x8;

/// One network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// `/sys/class/net/<name>/operstate` (RFC 2863 names: `up`, `down`, `unknown`, ...).
    pub operstate: String,
    /// `/sys/class/net/<name>/flags` (hex), the `IFF_*` bits.
    pub flags: u32,
}

/// The interfaces that make this machine online: not loopback, administratively up, and
/// not reported down by the kernel (`unknown` and `dormant` count as up: tunnels and
/// Wi-Fi in the middle of association report those).
pub fn online(interfaces: &[Interface]) -> Vec<String> {
    interfaces
        .iter()
        .filter(|i| i.flags & IFF_LOOPBACK == 0 && i.name != "lo")
        .filter(|i| i.flags & IFF_UP != 0)
        .filter(|i| !matches!(i.operstate.trim(), "down" | "lowerlayerdown" | "notpresent"))
        .map(|i| format!("{} ({})", i.name, i.operstate.trim()))
        .collect()
}

/// Lists the interfaces under `dir` (normally `/sys/class/net`). An interface whose files
/// cannot be read counts as up: the check fails closed.
pub fn read_sys_class_net(dir: &Path) -> Result<Vec<Interface>, CeremonyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CeremonyError::Read(dir.to_path_buf(), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CeremonyError::Read(dir.to_path_buf(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let operstate = std::fs::read_to_string(path.join("operstate"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unreadable".to_owned());
        let flags = std::fs::read_to_string(path.join("flags"))
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(IFF_UP);
        out.push(Interface {
            name,
            operstate,
            flags,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn i(name: &str, operstate: &str, flags: u32) -> Interface {
        Interface {
            name: name.into(),
            operstate: operstate.into(),
            flags,
        }
    }

    #[test]
    fn decision_table() {
        // (interface, counts as online)
        let cases = [
            (i("lo", "unknown", 0x9), false),
            (i("eth0", "up", 0x1003), true),
            (i("eth0", "down", 0x1003), false),
            (i("eth0", "down", 0x1002), false),
            (i("eth0", "up", 0x1002), false), // administratively down
            (i("wlan0", "dormant", 0x1003), true),
            (i("tun0", "unknown", 0x10d1), true),
            (i("eth1", "lowerlayerdown", 0x1003), false),
            (i("eth1", "notpresent", 0x1003), false),
            (i("weird", "unreadable", 0x1), true),
        ];
        for (iface, want) in &cases {
            assert_eq!(
                !online(std::slice::from_ref(iface)).is_empty(),
                *want,
                "{iface:?}"
            );
        }
        let all: Vec<Interface> = cases.iter().map(|(i, _)| i.clone()).collect();
        assert_eq!(
            online(&all),
            [
                "eth0 (up)",
                "wlan0 (dormant)",
                "tun0 (unknown)",
                "weird (unreadable)"
            ]
        );
    }

    #[test]
    fn reads_a_sysfs_like_tree_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        for (name, state, flags) in [
            ("lo", Some("unknown"), Some("0x9")),
            ("eth0", Some("up"), Some("0x1003")),
            ("odd", None, None),
        ] {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            if let Some(s) = state {
                std::fs::write(d.join("operstate"), format!("{s}\n")).unwrap();
            }
            if let Some(f) = flags {
                std::fs::write(d.join("flags"), format!("{f}\n")).unwrap();
            }
        }
        let list = read_sys_class_net(dir.path()).unwrap();
        assert_eq!(list[0], i("eth0", "up", 0x1003));
        assert_eq!(online(&list), ["eth0 (up)", "odd (unreadable)"]);
    }
}
