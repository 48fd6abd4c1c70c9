//! Where images come from (`images`): prefix rewrites for every image reference Previewd
//! writes (services' `image.repository`, the seed loader), so an air-gapped install pulls from
//! its own mirror. The chart applies the same rewrites to Previewd's own image.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Tried in order; the first `from` an image starts with is replaced by its `to`.
    pub rewrites: Vec<Rewrite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    /// e.g. `docker.io/` or `ghcr.io/acme/`.
    pub from: String,
    /// e.g. `registry.internal/mirror/docker.io/`.
    pub to: String,
}

impl ImagesConfig {
    /// `image` with the first matching prefix rewritten (unchanged when none matches).
    pub fn rewrite(&self, image: &str) -> String {
        match self.rewrites.iter().find(|r| image.starts_with(&r.from)) {
            Some(r) => format!("{}{}", r.to, &image[r.from.len()..]),
            None => image.to_owned(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (i, r) in self.rewrites.iter().enumerate() {
            let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
            if !plain(&r.from) || !plain(&r.to) {
                return Err(invalid(
                    format!("images.rewrites[{i}]"),
                    "`from` and `to` are image prefixes without spaces",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_prefix_is_rewritten() {
        let images = ImagesConfig {
            rewrites: vec![
                Rewrite { from: "docker.io/library/".into(), to: "mirror.internal/library/".into() },
                Rewrite { from: "docker.io/".into(), to: "mirror.internal/hub/".into() },
            ],
        };
        assert_eq!(
            images.rewrite("docker.io/library/postgres:16-alpine"),
            "mirror.internal/library/postgres:16-alpine"
        );
        assert_eq!(images.rewrite("docker.io/bitnami/redis:7"), "mirror.internal/hub/bitnami/redis:7");
        assert_eq!(images.rewrite("ghcr.io/acme/web"), "ghcr.io/acme/web");
    }
}
