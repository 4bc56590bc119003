//! The air-gap check: the ceremony refuses to run while any non-loopback network interface
//! is up, or any radio is not blocked by rfkill. The decisions are pure functions over
//! listings ([`online`], [`unblocked`]); the listings come from sysfs
//! (`/sys/class/net/*/{operstate,flags}`, `/sys/class/rfkill/*/{type,name,soft,hard}`).
//!
//! "Up" means administratively up (`IFF_UP`), whatever the carrier says: Wi-Fi switched on
//! but not yet associated reports `down` or `dormant` and can join a network a moment later,
//! so it counts as online. A radio that rfkill does not block can be brought up at any
//! moment, so it counts too. [`AirGap::check`] runs at the start, again before the keys are
//! made and again before anything is written (the ceremony takes minutes, and a cable can
//! be plugged in meanwhile); `--i-know-this-is-online` lets it go on, and everything seen
//! online at any of the checks is recorded in the manifest.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

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

/// One rfkill switch (a radio: Wi-Fi, Bluetooth, WWAN, ...) as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Radio {
    /// Its sysfs name, e.g. `rfkill0`.
    pub id: String,
    /// `type`: `wlan`, `bluetooth`, `wwan`, ...
    pub kind: String,
    /// `name`: the device, e.g. `phy0`, `hci0`.
    pub name: String,
    /// Blocked by software (`soft` is 1) or by a hardware switch (`hard` is 1).
    pub blocked: bool,
}

/// The interfaces that make this machine online: not loopback and administratively up
/// (with or without a carrier).
pub fn online(interfaces: &[Interface]) -> Vec<String> {
    interfaces
        .iter()
        .filter(|i| i.flags & IFF_LOOPBACK == 0 && i.name != "lo")
        .filter(|i| i.flags & IFF_UP != 0)
        .map(|i| format!("{} (up, {})", i.name, i.operstate.trim()))
        .collect()
}

/// The radios rfkill does not block.
pub fn unblocked(radios: &[Radio]) -> Vec<String> {
    radios
        .iter()
        .filter(|r| !r.blocked)
        .map(|r| format!("{} radio {} ({}, not blocked)", r.kind, r.name, r.id))
        .collect()
}

/// Lists the interfaces under `dir` (normally `/sys/class/net`). An interface whose files
/// cannot be read counts as up: the check fails closed.
pub fn read_sys_class_net(dir: &Path) -> Result<Vec<Interface>, CeremonyError> {
    let mut out = Vec::new();
    for path in entries(dir)? {
        let name = file_name(&path);
        let operstate =
            read_trimmed(&path.join("operstate")).unwrap_or_else(|| "unreadable".to_owned());
        let flags = read_trimmed(&path.join("flags"))
            .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(IFF_UP);
        out.push(Interface {
            name,
            operstate,
            flags,
        });
    }
    Ok(out)
}

/// Lists the rfkill switches under `dir` (normally `/sys/class/rfkill`; absent when the
/// kernel has no radios to switch). A switch whose state cannot be read counts as not
/// blocked: the check fails closed.
pub fn read_sys_class_rfkill(dir: &Path) -> Result<Vec<Radio>, CeremonyError> {
    let paths = match entries(dir) {
        Err(CeremonyError::Read(_, e)) if e.kind() == ErrorKind::NotFound => Vec::new(),
        other => other?,
    };
    let mut out = Vec::new();
    for path in paths {
        let is_one = |file: &str| read_trimmed(&path.join(file)).is_some_and(|s| s == "1");
        out.push(Radio {
            id: file_name(&path),
            kind: read_trimmed(&path.join("type")).unwrap_or_else(|| "unknown".to_owned()),
            name: read_trimmed(&path.join("name")).unwrap_or_else(|| "unknown".to_owned()),
            blocked: is_one("soft") || is_one("hard"),
        });
    }
    Ok(out)
}

/// The entries of a sysfs class directory, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, CeremonyError> {
    let read = std::fs::read_dir(dir).map_err(|e| CeremonyError::Read(dir.to_path_buf(), e))?;
    let mut out = Vec::new();
    for entry in read {
        out.push(
            entry
                .map_err(|e| CeremonyError::Read(dir.to_path_buf(), e))?
                .path(),
        );
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The air-gap check of one ceremony: where the kernel's view of the network is read, and
/// whether the operator overrode it.
#[derive(Clone, Debug)]
pub struct AirGap {
    net: PathBuf,
    rfkill: PathBuf,
    online_override: bool,
}

impl AirGap {
    /// This machine's network (`/sys/class/net`, `/sys/class/rfkill`); `online_override` is
    /// `--i-know-this-is-online`.
    pub fn new(online_override: bool) -> AirGap {
        AirGap::reading(Path::new("/sys"), online_override)
    }

    /// INSECURE, TESTS ONLY: reads `<sys>/class/net` and `<sys>/class/rfkill` instead of the
    /// kernel's, so a test can make the machine look offline (or online). Compiled only into
    /// test builds (the `insecure-test-hooks` feature), never into the shipped binary.
    #[cfg(any(test, feature = "insecure-test-hooks"))]
    pub fn insecure_test_reading(sys: &Path, online_override: bool) -> AirGap {
        AirGap::reading(sys, online_override)
    }

    fn reading(sys: &Path, online_override: bool) -> AirGap {
        AirGap {
            net: sys.join("class/net"),
            rfkill: sys.join("class/rfkill"),
            online_override,
        }
    }

    /// Whether `--i-know-this-is-online` was given.
    pub fn overridden(&self) -> bool {
        self.online_override
    }

    /// What makes this machine online now (interfaces up, radios not blocked). Refused
    /// ([`CeremonyError::Online`]) if anything does and the check is not overridden; with
    /// the override, the list, to record.
    pub fn check(&self) -> Result<Vec<String>, CeremonyError> {
        let mut up = online(&read_sys_class_net(&self.net)?);
        up.extend(unblocked(&read_sys_class_rfkill(&self.rfkill)?));
        if !up.is_empty() && !self.online_override {
            return Err(CeremonyError::Online(up));
        }
        Ok(up)
    }
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
    fn every_interface_that_is_up_counts_carrier_or_not() {
        // (interface, counts as online)
        let cases = [
            (i("lo", "unknown", 0x9), false),
            (i("eth0", "up", 0x1003), true),
            // Up without a carrier (cable out, Wi-Fi not associated): online.
            (i("eth0", "down", 0x1003), true),
            (i("wlan0", "dormant", 0x1003), true),
            (i("eth1", "lowerlayerdown", 0x1003), true),
            (i("eth1", "notpresent", 0x1003), true),
            (i("tun0", "unknown", 0x10d1), true),
            (i("weird", "unreadable", 0x1), true),
            // Administratively down: offline, whatever operstate says.
            (i("eth0", "down", 0x1002), false),
            (i("eth0", "up", 0x1002), false),
        ];
        for (iface, want) in &cases {
            assert_eq!(
                !online(std::slice::from_ref(iface)).is_empty(),
                *want,
                "{iface:?}"
            );
        }
        assert_eq!(
            online(&[i("wlan0", "down", 0x1003), i("lo", "unknown", 0x9)]),
            ["wlan0 (up, down)"]
        );
    }

    #[test]
    fn a_radio_counts_unless_rfkill_blocks_it() {
        let r = |id: &str, blocked| Radio {
            id: id.into(),
            kind: "wlan".into(),
            name: "phy0".into(),
            blocked,
        };
        assert!(unblocked(&[r("rfkill0", true)]).is_empty());
        assert_eq!(
            unblocked(&[r("rfkill0", true), r("rfkill1", false)]),
            ["wlan radio phy0 (rfkill1, not blocked)"]
        );
    }

    /// A fake sysfs: `(name, operstate, flags)` interfaces and `(id, type, soft, hard)` radios.
    fn sysfs(
        ifaces: &[(&str, Option<&str>, Option<&str>)],
        radios: &[(&str, &str, &str, &str)],
    ) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        for (name, state, flags) in ifaces {
            let d = sys.path().join("class/net").join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(s) = state {
                std::fs::write(d.join("operstate"), format!("{s}\n")).unwrap();
            }
            if let Some(f) = flags {
                std::fs::write(d.join("flags"), format!("{f}\n")).unwrap();
            }
        }
        for (id, kind, soft, hard) in radios {
            let d = sys.path().join("class/rfkill").join(id);
            std::fs::create_dir_all(&d).unwrap();
            for (file, text) in [
                ("type", kind),
                ("name", &"phy0"),
                ("soft", soft),
                ("hard", hard),
            ] {
                if !text.is_empty() {
                    std::fs::write(d.join(file), format!("{text}\n")).unwrap();
                }
            }
        }
        sys
    }

    #[test]
    fn reads_a_sysfs_like_tree_and_fails_closed() {
        let sys = sysfs(
            &[
                ("lo", Some("unknown"), Some("0x9")),
                ("eth0", Some("up"), Some("0x1003")),
                ("odd", None, None),
            ],
            &[
                ("rfkill0", "wlan", "1", "0"),
                ("rfkill1", "bluetooth", "0", "1"),
                ("rfkill2", "wwan", "0", "0"),
                ("rfkill3", "wlan", "", ""), // unreadable: not blocked
            ],
        );
        let list = read_sys_class_net(&sys.path().join("class/net")).unwrap();
        assert_eq!(list[0], i("eth0", "up", 0x1003));
        assert_eq!(online(&list), ["eth0 (up, up)", "odd (up, unreadable)"]);
        let radios = read_sys_class_rfkill(&sys.path().join("class/rfkill")).unwrap();
        assert_eq!(
            unblocked(&radios),
            [
                "wwan radio phy0 (rfkill2, not blocked)",
                "wlan radio phy0 (rfkill3, not blocked)"
            ]
        );
        // No rfkill class at all: no radios (not an error); no net class: an error.
        let empty = tempfile::tempdir().unwrap();
        assert!(
            read_sys_class_rfkill(&empty.path().join("class/rfkill"))
                .unwrap()
                .is_empty()
        );
        assert!(read_sys_class_net(&empty.path().join("class/net")).is_err());
    }

    #[test]
    fn the_check_refuses_unless_overridden_and_then_lists_what_it_saw() {
        let offline = sysfs(
            &[
                ("lo", Some("unknown"), Some("0x9")),
                ("eth0", Some("down"), Some("0x1002")),
            ],
            &[("rfkill0", "wlan", "1", "0")],
        );
        assert_eq!(
            AirGap::insecure_test_reading(offline.path(), false)
                .check()
                .unwrap(),
            Vec::<String>::new()
        );
        let online_ = sysfs(
            &[
                ("lo", Some("unknown"), Some("0x9")),
                ("wlan0", Some("dormant"), Some("0x1003")),
            ],
            &[("rfkill0", "wlan", "0", "0")],
        );
        match AirGap::insecure_test_reading(online_.path(), false).check() {
            Err(CeremonyError::Online(up)) => assert_eq!(
                up,
                [
                    "wlan0 (up, dormant)",
                    "wlan radio phy0 (rfkill0, not blocked)"
                ]
            ),
            other => panic!("{other:?}"),
        }
        let overridden = AirGap::insecure_test_reading(online_.path(), true);
        assert!(overridden.overridden());
        assert_eq!(overridden.check().unwrap().len(), 2);
    }
}
