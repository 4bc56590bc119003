//! One test of this test binary run again in a child process as another user, e.g. the
//! signer's own uid trying to read the signer's memory, or a stranger's uid trying its socket.
//!
//! The child runs a *copy* of the test binary in a fresh world-readable temp dir: the original
//! lives in the checkout's `target/`, which another uid cannot reach when the checkout is under
//! a `0700` directory (root's home, where a clone usually lands). The child's working dir is
//! that temp dir too.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// A user to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsUser {
    /// The uid.
    pub uid: u32,
    /// The gid (no supplementary groups are kept).
    pub gid: u32,
}

impl AsUser {
    /// This process's own (effective) user: the child runs without a switch.
    pub fn current() -> AsUser {
        AsUser {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }
}

/// Runs test `test` (by exact name) of this test binary as `user`, with `env` added; its
/// output. The test itself should do nothing unless one of `env`'s variables is set.
pub fn run_test_as(test: &str, user: AsUser, env: &[(&str, &OsStr)]) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = tempfile::Builder::new()
        .prefix("vigil-reexec-")
        .tempdir()
        .expect("a temp dir for the re-executed test");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 755 on the re-exec dir");
    let copy = dir
        .path()
        .join(exe.file_name().expect("the test binary has a file name"));
    std::fs::copy(&exe, &copy)
        .unwrap_or_else(|e| panic!("copying {} for the child: {e}", exe.display()));
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .expect("chmod 755 on the copied test binary");
    let mut cmd = Command::new(&copy);
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .current_dir(dir.path())
        .envs(env.iter().copied());
    if user != AsUser::current() {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running {test} as uid {}: {e}", user.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD_ENV: &str = "VIGIL_TESTKIT_REEXEC_CHILD";

    #[test]
    fn child_prints_its_uid() {
        if std::env::var_os(CHILD_ENV).is_some() {
            println!("CHILD uid={}", AsUser::current().uid);
        }
    }

    #[test]
    fn a_test_runs_again_from_a_copy_as_another_user() {
        let user = if crate::host::is_root() {
            AsUser {
                uid: 4_243,
                gid: 4_243,
            }
        } else {
            AsUser::current()
        };
        let out = run_test_as(
            "reexec::tests::child_prints_its_uid",
            user,
            &[(CHILD_ENV, OsStr::new("1"))],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("CHILD uid={}", user.uid)),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
