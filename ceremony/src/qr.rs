//! The approval secret's `otpauth://` URI (Key Uri Format, as every authenticator app reads
//! it) and its QR code for the terminal: two modules per character with half blocks, light
//! modules drawn as ink so it shows right on a dark terminal, with a 2-module quiet zone.

use qrcode::{Color, EcLevel, QrCode};
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::error::CeremonyError;

/// The issuer shown in the authenticator app.
pub const ISSUER: &str = "Vigil";
/// Quiet zone around the code, in modules.
const QUIET: usize = 2;

/// The `otpauth://totp/...` URI of the approval secret (SHA-1, 6 digits, 30 s, as the
/// signer's approvals expect). It holds the secret: show it, never write it.
pub fn otpauth_uri(
    secret: &Zeroizing<Vec<u8>>,
    account: &str,
) -> Result<Zeroizing<String>, CeremonyError> {
    let totp = TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        vigil_signer::STEP_SECS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
    .map_err(|e| CeremonyError::Other(format!("cannot make the authenticator URI: {e}")))?;
    Ok(Zeroizing::new(totp.get_url()))
}

/// The QR code of `text` as terminal lines (see the module docs).
pub fn render(text: &str) -> Result<Zeroizing<String>, CeremonyError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| CeremonyError::Other(format!("cannot make the QR code: {e}")))?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET;
    let light = |x: usize, y: usize| -> bool {
        if x < QUIET || y < QUIET || x >= width + QUIET || y >= width + QUIET {
            return true;
        }
        colors
            .get((y - QUIET) * width + (x - QUIET))
            .is_none_or(|c| *c == Color::Light)
    };
    let mut out = Zeroizing::new(String::with_capacity(size * (size / 2 + 1) * 3));
    for y in (0..size).step_by(2) {
        for x in 0..size {
            let top = light(x, y);
            let bottom = y + 1 >= size || light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Turns the terminal text back into a greyscale image (ink = light module = 255),
    /// `scale` pixels per module, and decodes it.
    pub(crate) fn decode_terminal_qr(text: &str, scale: usize) -> String {
        let rows: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let w = rows[0].len();
        let h = rows.len() * 2;
        let module_light = |x: usize, y: usize| -> bool {
            let c = rows[y / 2][x];
            matches!((c, y % 2), ('█', _) | ('▀', 0) | ('▄', 1))
        };
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * scale, |x, y| {
            if module_light(x / scale, y / scale) {
                255
            } else {
                0
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one QR code in the picture");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn terminal_qr_decodes_back_to_the_uri() {
        let secret = Zeroizing::new((0u8..20).collect::<Vec<u8>>());
        let uri = otpauth_uri(&secret, "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/Vigil:alice?"), "{}", *uri);
        assert!(
            uri.contains("secret=AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT"),
            "{}",
            *uri
        );
        let shown = render(&uri).unwrap();
        assert_eq!(decode_terminal_qr(&shown, 4), *uri);
        let other = render("otpauth://totp/Vigil:bob?secret=AAAA").unwrap();
        assert_ne!(*shown, *other);
    }
}
