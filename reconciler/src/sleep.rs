//! Sleeping previews (`ttl.sleepAfter`; pure): a preview idle that long scales its services to
//! zero through their Helm values and keeps its namespace and URL. Its ingress sends visitors
//! to a small page Previewd serves (`serve::wake_router`), whose wake link is signed per
//! preview. A push, `/preview wake` or that link wakes it; the sleep clock counts from the
//! latest of the PR's activity and the last wake.

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::crd::PreviewEnvironmentSpec;

/// The environment variable holding the key wake links are signed with.
pub const WAKE_KEY_ENV: &str = "PREVIEWD_WAKE_KEY";

/// What the sleep clock counts from.
fn active_at(spec: &PreviewEnvironmentSpec) -> DateTime<Utc> {
    let woken = spec.requested.as_ref().and_then(|r| r.woken_at);
    woken.map_or(spec.last_activity, |w| w.max(spec.last_activity))
}

/// When the preview falls (or fell) asleep; `None` with sleeping off, or before anything is
/// deployed.
pub fn falls_asleep_at(config: &Config, spec: &PreviewEnvironmentSpec) -> Option<DateTime<Utc>> {
    let after = config.ttl.sleep_after?;
    if spec.head_sha.is_empty() {
        return None;
    }
    active_at(spec).checked_add_signed(chrono::Duration::from_std(after).ok()?)
}

/// Since when the preview sleeps at `now` (`None`: awake).
pub fn asleep_since(config: &Config, spec: &PreviewEnvironmentSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    falls_asleep_at(config, spec).filter(|at| *at <= now)
}

/// The link's signature: HMAC-SHA256 of the preview's name, hex.
pub fn signature(key: &[u8], preview: &str) -> String {
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(preview.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` is this preview's (compared in constant time).
pub fn verify(key: &[u8], preview: &str, signature: &str) -> bool {
    let (Ok(mut mac), Ok(given)) = (hmac::Hmac::<Sha256>::new_from_slice(key), hex::decode(signature)) else {
        return false;
    };
    mac.update(preview.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The page a sleeping preview's visitors are sent to: `<ttl.wakeUrl>/asleep/<preview>?sig=…`.
pub fn page_url(config: &Config, key: &[u8], preview: &str) -> Option<String> {
    let base = config.ttl.wake_url.as_deref()?.trim_end_matches('/');
    Some(format!("{base}/asleep/{preview}?sig={}", signature(key, preview)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_valid_for_its_preview_only() {
        let sig = signature(b"k", "preview-shop-pr-42");
        assert!(verify(b"k", "preview-shop-pr-42", &sig));
        assert!(!verify(b"k", "preview-shop-pr-43", &sig));
        assert!(!verify(b"other", "preview-shop-pr-42", &sig));
        assert!(!verify(b"k", "preview-shop-pr-42", "zz"));
    }
}
