//! Names of what a preview creates: collision-free across repositories (every repository has
//! a unique slug, checked at config load) and within DNS-1123's 63-character label limit (a
//! too-long name is cut and suffixed with a hash of the whole, so it stays unique).

use sha2::{Digest, Sha256};

/// The longest DNS label (and namespace name, and label value).
pub const MAX_LABEL: usize = 63;

/// Lower-cases and replaces everything but `[a-z0-9-]` with `-`, collapsing runs and trimming
/// `-` at both ends.
pub fn sanitize_label(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// `name` if it fits in `max` characters, else its head, `-`, and 8 hex digits of its hash.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let keep = max.saturating_sub(9);
    // Cut on a character boundary (names are ASCII here, but this must never panic).
    let cut = name.char_indices().map(|(i, _)| i).take_while(|i| *i <= keep).last().unwrap_or(0);
    let head = name[..cut].trim_end_matches('-');
    format!("{head}-{}", &hash[..8])
}

/// `<prefix><slug>-pr-<n>`: the preview's namespace, and the name of its PreviewEnvironment
/// and ApplicationSet.
pub fn preview_name(prefix: &str, slug: &str, pr: u64) -> String {
    fit(&format!("{prefix}{slug}-pr-{pr}"), MAX_LABEL)
}

/// `<slug>-pr-<n>.<zone>`: one label under the preview zone, so a single wildcard record and
/// certificate serve every preview.
pub fn preview_host(slug: &str, pr: u64, zone: &str) -> String {
    format!("{}.{zone}", fit(&format!("{slug}-pr-{pr}"), MAX_LABEL))
}

/// An Argo CD Application for one service of a preview.
pub fn application_name(preview: &str, service: &str) -> String {
    fit(&format!("{preview}-{service}"), MAX_LABEL)
}

/// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').count() >= 2 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_documented_patterns() {
        assert_eq!(sanitize_label("My_Repo.js"), "my-repo-js");
        assert_eq!(preview_name("preview-", "shop", 12), "preview-shop-pr-12");
        assert_eq!(preview_host("shop", 12, "preview.example.com"), "shop-pr-12.preview.example.com");
        assert_eq!(application_name("preview-shop-pr-12", "web"), "preview-shop-pr-12-web");
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = preview_name("preview-", &"a".repeat(40), 123456);
        let b = preview_name("preview-", &"a".repeat(40), 123457);
        assert!(a.len() <= MAX_LABEL && b.len() <= MAX_LABEL);
        assert_ne!(a, b);
        assert!(is_dns_label(&a), "{a}");
    }

    proptest! {
        #[test]
        fn every_name_is_a_dns_label(slug in "[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", pr in 1u64..10_000_000, service in "[a-z]([a-z0-9-]{0,28}[a-z0-9])?") {
            let name = preview_name("preview-", &slug, pr);
            prop_assert!(is_dns_label(&name), "{}", name);
            prop_assert!(is_dns_label(&application_name(&name, &service)));
            let host = preview_host(&slug, pr, "preview.example.com");
            prop_assert!(is_dns_name(&host), "{}", host);
        }
    }
}
