//! A program driven over a real terminal: its standard input and output are the slave side
//! of a pseudo-terminal (`openpt`), the test holds the master side. For programs that refuse
//! to show secrets anywhere but a terminal (`vigil-ceremony new`): to them this is the
//! console, and what they write (escape sequences included) is what a screen would get.
//!
//! Standard error stays a pipe, read once the program has exited. The terminal echoes what
//! the test types and turns `\n` into `\r\n` on output, as a console does.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use rustix::fs::OFlags;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// How long [`PtyChild::read_until`] waits for what it expects.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running program whose terminal is a pseudo-terminal the test holds.
#[derive(Debug)]
pub struct PtyChild {
    child: Child,
    master: File,
    output: Receiver<Vec<u8>>,
    /// Everything the program wrote so far, as text.
    seen: String,
    /// How much of `seen` earlier `read_until` calls consumed.
    consumed: usize,
}

impl PtyChild {
    /// Starts `cmd` with its standard input and output on a new pseudo-terminal, standard
    /// error piped.
    pub fn spawn(mut cmd: Command) -> PtyChild {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave_path =
            std::path::PathBuf::from(name.into_string().expect("the terminal's name is UTF-8"));
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlags::NOCTTY.bits().cast_signed())
            .open(&slave_path)
            .expect("opening the terminal's slave side");
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("starting the program on the terminal");
        // The parent's copies of the slave side close with `cmd`: the end of the program is
        // then the end of the terminal's output.
        drop(cmd);
        let master = File::from(master);
        let mut reader = master.try_clone().expect("dup of the master side");
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // EIO: every slave side is closed (the program exited).
                    Err(_) => break,
                }
            }
        });
        PtyChild {
            child,
            master,
            output,
            seen: String::new(),
            consumed: 0,
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("typing on the terminal");
    }

    /// Waits until the output (after what earlier calls consumed) holds `needle`; returns it
    /// up to the end of that line. Panics with everything seen when the program ends or
    /// [`EXPECT_TIMEOUT`] passes first.
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            if let Some(at) = self.seen[self.consumed..].find(needle) {
                let start = self.consumed + at;
                let end = self.seen[start..]
                    .find('\n')
                    .map_or(self.seen.len(), |n| start + n + 1);
                let text = self.seen[self.consumed..end].to_owned();
                self.consumed = end;
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {needle:?} on the terminal within {EXPECT_TIMEOUT:?}: {}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the program ended without writing {needle:?}: {}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits for the program to end: its status, the rest of the terminal's output (after
    /// what `read_until` consumed), and its standard error.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().expect("waiting for the program");
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).expect("the program's stderr");
        }
        (status, self.seen[self.consumed..].to_owned(), err)
    }

    /// Everything the program wrote to the terminal so far (read or not).
    pub fn everything(&self) -> &str {
        &self.seen
    }
}
