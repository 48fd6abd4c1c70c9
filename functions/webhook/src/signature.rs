//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body, compared in constant
//! time, against every configured secret (two at once while a secret is being rotated).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";
/// A SHA-256 tag is 32 bytes, 64 hex characters.
const TAG_LEN: usize = 32;

/// The webhook secrets, newest first. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets(Vec<Vec<u8>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("no webhook secret configured (the list is empty)")]
    Empty,
    #[error("more than {MAX_SECRETS} webhook secrets configured; keep the current and the previous one")]
    TooMany,
}

/// Rotation needs two; a third would only double the cost of every bad request.
pub const MAX_SECRETS: usize = 2;

impl Secrets {
    /// Builds the list from a comma- or newline-separated string (the env var and the
    /// Secrets Manager value use the same format). Blank entries are ignored.
    pub fn parse(list: &str) -> Result<Secrets, SecretsError> {
        let secrets: Vec<Vec<u8>> =
            list.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
        match secrets.len() {
            0 => Err(SecretsError::Empty),
            n if n > MAX_SECRETS => Err(SecretsError::TooMany),
            _ => Ok(Secrets(secrets)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

/// Verifies `header` (the `X-Hub-Signature-256` value) over `body`.
///
/// Returns which secret matched (0 = current, 1 = previous) so rotation can be observed.
pub fn verify(secrets: &Secrets, header: Option<&str>, body: &[u8]) -> Result<usize, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_tag = header.strip_prefix(PREFIX).ok_or(SignatureError::Malformed)?;
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_tag, &mut tag).map_err(|_| SignatureError::Malformed)?;
    for (index, secret) in secrets.0.iter().enumerate() {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
            continue; // HMAC accepts keys of any length; kept total for safety.
        };
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&tag).is_ok() {
            return Ok(index);
        }
    }
    Err(SignatureError::Mismatch)
}

/// Signs `body` as GitHub does; for tests, benchmarks and the local demo.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets(list: &str) -> Secrets {
        Secrets::parse(list).unwrap_or_else(|e| panic!("{e}"))
    }

    // Known-answer vector from GitHub's "Validating webhook deliveries".
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_vector_verifies() {
        assert_eq!(verify(&secrets(DOC_SECRET), Some(DOC_SIGNATURE), DOC_BODY), Ok(0));
        assert_eq!(sign(DOC_SECRET.as_bytes(), DOC_BODY), DOC_SIGNATURE);
    }

    #[test]
    fn tampered_body_is_rejected() {
        assert_eq!(verify(&secrets(DOC_SECRET), Some(DOC_SIGNATURE), b"Hello, World?"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn missing_header_is_rejected() {
        assert_eq!(verify(&secrets(DOC_SECRET), None, DOC_BODY), Err(SignatureError::Missing));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let s = secrets(DOC_SECRET);
        let good_hex = &DOC_SIGNATURE[PREFIX.len()..];
        for header in [
            "",
            "sha256=",
            good_hex,                                 // no prefix
            &format!("sha1={good_hex}"),              // wrong algorithm
            &format!("sha256={}", &good_hex[..63]),   // odd length
            &format!("sha256={}", &good_hex[..62]),   // one byte short
            &format!("sha256={good_hex}00"),          // one byte long
            &format!("sha256={}zz", &good_hex[..62]), // not hex
            &format!("sha256={}", "é".repeat(32)),    // multibyte, 64 bytes
        ] {
            assert_eq!(verify(&s, Some(header), DOC_BODY), Err(SignatureError::Malformed), "{header:?}");
        }
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = format!("sha256={}", DOC_SIGNATURE[PREFIX.len()..].to_uppercase());
        assert_eq!(verify(&secrets(DOC_SECRET), Some(&upper), DOC_BODY), Ok(0));
    }

    #[test]
    fn either_rotation_secret_verifies() {
        let both = secrets("new-secret,old-secret");
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        assert_eq!(verify(&both, Some(&sign(b"new-secret", body)), body), Ok(0));
        assert_eq!(verify(&both, Some(&sign(b"old-secret", body)), body), Ok(1));
        assert_eq!(verify(&both, Some(&sign(b"other", body)), body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn secret_lists_are_validated() {
        assert_eq!(Secrets::parse(" , \n"), Err(SecretsError::Empty));
        assert_eq!(Secrets::parse("a,b,c"), Err(SecretsError::TooMany));
        assert_eq!(secrets(" a \n b ").len(), 2);
        assert!(!format!("{:?}", secrets("hunter2")).contains("hunter2"));
    }

    proptest! {
        // The strategy draws only valid secrets (printable ASCII without the list separator ',',
        // with at least one non-blank character), so no case is assumed away after a parse.
        #[test]
        fn sign_then_verify_round_trips(
            secret in "[ -+\\--~]{0,31}[!-+\\--~][ -+\\--~]{0,32}",
            body in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let s = Secrets::parse(&secret).map_err(|e| TestCaseError::fail(format!("{secret:?}: {e}")))?;
            let header = sign(secret.trim().as_bytes(), &body);
            prop_assert_eq!(verify(&s, Some(&header), &body), Ok(0));
        }

        #[test]
        fn arbitrary_headers_never_panic(header in ".{0,200}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = verify(&secrets("k"), Some(&header), &body);
        }
    }
}
