//! A USB stick for the key-ceremony tests: a real FAT32 image (`mkfs.vfat`), read and written
//! with `mtools` (`mcopy`, no mount, no root). A missing tool fails the test and says to run
//! `tests/run`, which installs dosfstools and mtools.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host::check;

/// A FAT32 image standing in for the USB stick.
#[derive(Debug)]
pub struct Stick {
    img: PathBuf,
}

/// A system tool by name (PATH, then /usr/sbin and /sbin, where mkfs.vfat lives); a
/// missing one FAILS the test with what to do.
fn tool(name: &str) -> Command {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let Some(path) = found else {
        panic!(
            "{name} is missing: these tests need real FAT images; install dosfstools and mtools (tests/run does: run tests/run)"
        );
    };
    let mut cmd = Command::new(path);
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    cmd
}

impl Stick {
    /// A freshly formatted FAT32 image labelled VIGIL-KEYS.
    pub fn blank(dir: &Path, name: &str) -> Stick {
        let img = dir.join(name);
        check(
            tool("mkfs.vfat")
                .args(["-F", "32", "-n", "VIGIL-KEYS", "-C"])
                .arg(&img)
                .arg("34000")
                .output()
                .unwrap(),
            "mkfs.vfat",
        );
        Stick { img }
    }

    /// Copies the tree under `src` onto the stick's root.
    pub fn write_tree(&self, src: &Path) {
        let mut cmd = tool("mcopy");
        cmd.arg("-i").arg(&self.img).args(["-s", "-Q"]);
        for e in std::fs::read_dir(src).unwrap() {
            cmd.arg(e.unwrap().path());
        }
        check(cmd.arg("::/").output().unwrap(), "mcopy onto the stick");
    }

    /// Overwrites one file on the stick.
    pub fn put(&self, rel: &str, bytes: &[u8]) {
        let tmp = self.img.with_extension("put");
        std::fs::write(&tmp, bytes).unwrap();
        check(
            tool("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(&self.img)
                .arg(&tmp)
                .arg(format!("::/{rel}"))
                .output()
                .unwrap(),
            "mcopy -o",
        );
    }

    /// Reads one file off the stick.
    pub fn get(&self, rel: &str) -> Vec<u8> {
        check(
            tool("mcopy")
                .arg("-i")
                .arg(&self.img)
                .arg(format!("::/{rel}"))
                .arg("-")
                .output()
                .unwrap(),
            "mcopy to stdout",
        )
        .stdout
    }

    /// The appliance's view: the stick's files copied into a fresh directory.
    pub fn copy_out(&self, dest: &Path) -> PathBuf {
        std::fs::create_dir_all(dest).unwrap();
        check(
            tool("mcopy")
                .arg("-i")
                .arg(&self.img)
                .args(["-s", "-n", "::/"])
                .arg(dest)
                .output()
                .unwrap(),
            "mcopy off the stick",
        );
        dest.to_path_buf()
    }
}
