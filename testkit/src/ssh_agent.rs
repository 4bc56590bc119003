//! OpenSSH's `ssh-agent` as the benchmarks' reference: started on a temp socket with one
//! ed25519 key, and asked to sign over its own protocol (draft-miller-ssh-agent: list
//! identities, sign). Needs `ssh-agent`, `ssh-keygen` and `ssh-add` on PATH
//! (`apt-get install openssh-client`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// OpenSSH's `ssh-agent` with one ed25519 key, and a minimal client of its protocol.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    key_blob: Vec<u8>,
}

impl SshAgent {
    /// Makes a key in `dir`, starts `ssh-agent -D` on a socket there and adds the key.
    /// An error says what is missing (the agent and its tools come with `openssh-client`).
    pub fn start(dir: &Path) -> Result<Self, String> {
        let socket = dir.join("ssh-agent.sock");
        let key = dir.join("id_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output();
        match keygen {
            Ok(o) if o.status.success() => {}
            _ => return Err("ssh-keygen not available (apt-get install openssh-client)".into()),
        }
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                return Err("ssh-agent did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .map_err(|e| e.to_string())?;
        if !added.status.success() {
            return Err(format!(
                "ssh-add failed: {}",
                String::from_utf8_lossy(&added.stderr)
            ));
        }
        let mut s = UnixStream::connect(&socket).map_err(|e| e.to_string())?;
        let reply = call(&mut s, &[11]);
        if reply.first() != Some(&12) {
            return Err("unexpected identities answer".into());
        }
        let (blob, _) = read_string(&reply[5..]);
        Ok(Self {
            child,
            socket,
            key_blob: blob.to_vec(),
        })
    }

    /// The agent's pid (for its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One signature of a 200-byte message (about a Solana message's size), over a
    /// connection kept per thread.
    pub fn sign_once(&self) {
        thread_local! {
            static SSH: std::cell::RefCell<Option<UnixStream>> = const { std::cell::RefCell::new(None) };
        }
        SSH.with(|c| {
            let mut c = c.borrow_mut();
            let s = c.get_or_insert_with(|| UnixStream::connect(&self.socket).unwrap());
            let mut msg = vec![13];
            put_string(&mut msg, &self.key_blob);
            put_string(&mut msg, &[0x5a; 200]); // about the size of a Solana message
            msg.extend_from_slice(&0u32.to_be_bytes());
            let reply = call(s, &msg);
            assert_eq!(reply.first(), Some(&14), "ssh-agent refused to sign");
        });
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(s: &mut UnixStream, msg: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

fn read_string(b: &[u8]) -> (&[u8], &[u8]) {
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    (&b[4..4 + n], &b[4 + n..])
}
