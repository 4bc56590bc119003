//! The operator's authenticator: the TOTP codes (RFC 6238: SHA-1, 6 digits, 30 s steps) of the
//! approval secret that dev-init or a ceremony enrolled, a wrong code, and a wait for a fresh
//! step when a test needs several codes without one rolling over.

use totp_rs::{Algorithm, Secret, TOTP};
use vigil_protocol::{DevInitReport, OperatorCode};

use crate::host::unix_now;

/// The operator's authenticator app.
#[derive(Clone, Debug)]
pub struct Operator {
    totp: TOTP,
}

impl Operator {
    /// The authenticator enrolled by dev-init.
    pub fn from_report(report: &DevInitReport) -> Operator {
        let secret = Secret::Encoded(report.totp_secret_base32.expose().to_owned())
            .to_bytes()
            .expect("dev-init's TOTP secret is base32");
        Operator {
            totp: TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, None, String::new())
                .expect("dev-init's TOTP secret is long enough"),
        }
    }

    /// The authenticator enrolled from an `otpauth://` URI (a ceremony's).
    pub fn from_uri(uri: &str) -> Operator {
        Operator {
            totp: TOTP::from_url(uri)
                .unwrap_or_else(|e| panic!("{uri} is not an otpauth URI: {e}")),
        }
    }

    /// The code shown now.
    pub fn code(&self) -> OperatorCode {
        self.code_at(unix_now())
    }

    /// The code shown at unix time `t`.
    pub fn code_at(&self, t: u64) -> OperatorCode {
        self.totp
            .generate(t)
            .parse()
            .expect("a 6-digit TOTP code is an operator code")
    }

    /// A code valid in none of the previous, the current and the next step (what the signer
    /// accepts), so it is wrong now whatever the clock skew allowance.
    pub fn wrong_code(&self) -> OperatorCode {
        let t = unix_now();
        let valid: Vec<String> = [t - 30, t, t + 30]
            .iter()
            .map(|&s| self.totp.generate(s))
            .collect();
        (0..10u32)
            .map(|i| format!("{:06}", 111_111 * i))
            .find(|c| !valid.contains(c))
            .expect("three valid codes cannot cover ten candidates")
            .parse()
            .expect("six digits are an operator code")
    }
}

/// Waits, if needed, until at least `margin` seconds remain in the current 30 s step, so that
/// the codes of the previous, current and next step stay what they are for that long; now.
pub fn fresh_step(margin: u64) -> u64 {
    let into = unix_now() % 30;
    if into + margin >= 30 {
        std::thread::sleep(std::time::Duration::from_secs(30 - into));
    }
    unix_now()
}
