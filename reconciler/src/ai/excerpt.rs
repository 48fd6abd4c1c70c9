//! What of a PR's diff may be sent to a model (pure): never the diff of lockfiles, generated
//! or vendored code, or files that hold secrets; never a line that looks like a credential;
//! never more than the configured number of bytes. What is left out is listed by name.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::types::Globs;

/// Paths whose diffs are never sent, whatever the configuration adds.
pub const DEFAULT_IGNORED: &[&str] = &[
    // Lockfiles
    "**/package-lock.json",
    "**/yarn.lock",
    "**/pnpm-lock.yaml",
    "**/Cargo.lock",
    "**/go.sum",
    "**/poetry.lock",
    "**/Pipfile.lock",
    "**/Gemfile.lock",
    "**/composer.lock",
    "**/*.lock",
    // Vendored and generated code, build output
    "vendor/**",
    "**/vendor/**",
    "**/node_modules/**",
    "third_party/**",
    "dist/**",
    "build/**",
    "**/*.min.js",
    "**/*.min.css",
    "**/*.map",
    "**/*.pb.go",
    "**/*_pb2.py",
    "**/*.generated.*",
    "**/*_generated.*",
    "**/generated/**",
    "**/__snapshots__/**",
    "**/*.snap",
    // Secrets and keys
    "**/.env",
    "**/.env.*",
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
    "**/id_rsa*",
    "**/*secret*",
    "**/*credential*",
];

/// A changed file: its path and GitHub's patch for it (absent for binaries and huge diffs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    pub patch: Option<String>,
}

/// What goes into the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Excerpt {
    /// Every changed path (names are not secret; they are what the static mapping sees too).
    pub files: Vec<String>,
    /// Diff text of the files that may be sent, within the byte budget.
    pub diff: String,
    /// Files whose diff was left out: ignored, or over the budget.
    pub omitted: Vec<String>,
    /// Lines withheld because they looked like credentials.
    pub redacted_lines: usize,
    /// What the build graph found (file -> service paths; names only, no file contents).
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Filter {
    built_in: GlobSet,
    /// `ai.ignorePaths`, compiled at config load.
    extra: Globs,
}

impl Filter {
    /// The built-in ignore list plus `extra`.
    pub fn new(extra: &Globs) -> Result<Filter, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for pattern in DEFAULT_IGNORED {
            builder.add(Glob::new(pattern)?);
        }
        Ok(Filter { built_in: builder.build()?, extra: extra.clone() })
    }

    pub fn is_ignored(&self, path: &str) -> bool {
        self.built_in.is_match(path) || self.extra.is_match(path)
    }

    /// The excerpt of `files` within `max_bytes` of diff text.
    pub fn excerpt(&self, files: &[ChangedFile], max_bytes: usize) -> Excerpt {
        let mut out = Excerpt { files: files.iter().map(|f| f.path.clone()).collect(), ..Excerpt::default() };
        for file in files {
            let Some(patch) = file.patch.as_deref().filter(|_| !self.is_ignored(&file.path)) else {
                out.omitted.push(file.path.clone());
                continue;
            };
            let mut block = format!("--- {}\n", file.path);
            for line in patch.lines() {
                if looks_like_secret(line) {
                    out.redacted_lines += 1;
                    block.push_str("[line withheld: looks like a credential]\n");
                } else {
                    block.push_str(line);
                    block.push('\n');
                }
            }
            if out.diff.len() + block.len() > max_bytes {
                out.omitted.push(file.path.clone());
            } else {
                out.diff.push_str(&block);
            }
        }
        out
    }
}

/// Credential shapes: key prefixes of common providers, private key blocks, and assignments
/// to secret-sounding names with a literal value.
pub fn looks_like_secret(line: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "AKIA",
        "ASIA",
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "sk-",
        "sk_live_",
        "rk_live_",
        "AIza",
        "-----BEGIN",
    ];
    let tokens = line.split(|c: char| c.is_whitespace() || "\"'`=:,;()[]{}<>".contains(c));
    let has_key = tokens.clone().any(|t| {
        PREFIXES.iter().any(|p| t.starts_with(p) && t.len() >= p.len() + 8)
            || t.starts_with("-----BEGIN")
            || (t.len() >= 32 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/') && mixed(t))
    });
    if has_key || line.contains("PRIVATE KEY") {
        return true;
    }
    let lower = line.to_ascii_lowercase();
    const NAMES: &[&str] = &["password", "passwd", "secret", "token", "api_key", "apikey", "api-key", "private_key"];
    NAMES.iter().any(|name| {
        lower.find(name).is_some_and(|at| {
            let rest = lower[at + name.len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
            let rest = rest.trim_start();
            let value = rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')).map(str::trim);
            // A literal value, not a reference (`${VAR}`, `env.X`, a function call).
            value.is_some_and(|v| {
                let v = v.trim_matches(|c| c == '"' || c == '\'' || c == ',');
                v.len() >= 6 && !v.starts_with('$') && !v.contains("env") && !v.contains('(') && !v.contains("{{")
            })
        })
    })
}

/// Letters and digits both: random-looking rather than a long word.
fn mixed(token: &str) -> bool {
    token.chars().any(|c| c.is_ascii_digit())
        && token.chars().any(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, patch: &str) -> ChangedFile {
        ChangedFile { path: path.into(), patch: Some(patch.into()) }
    }

    #[test]
    fn lockfiles_generated_vendored_and_secret_files_are_left_out() {
        let filter = Filter::new(&Globs::new(&["fixtures/**".to_owned()]).unwrap()).unwrap();
        for path in [
            "package-lock.json",
            "web/yarn.lock",
            "go.sum",
            "vendor/github.com/x/y.go",
            "api/gen/api.pb.go",
            "web/dist/app.min.js",
            ".env",
            "deploy/tls.key",
            "config/secrets.yaml",
            "fixtures/big.json",
        ] {
            assert!(filter.is_ignored(path), "{path}");
        }
        for path in ["api/handlers/cart.go", "web/src/App.tsx", "Dockerfile", "go.mod"] {
            assert!(!filter.is_ignored(path), "{path}");
        }
    }

    #[test]
    fn the_excerpt_is_bounded_and_lists_what_it_left_out() {
        let filter = Filter::new(&Globs::default()).unwrap();
        let files = [
            file("api/cart.go", "@@ -1 +1 @@\n-old\n+new"),
            file("package-lock.json", "+\"lodash\": \"4.17.21\""),
            ChangedFile { path: "web/logo.png".into(), patch: None },
            file("web/big.ts", &"+x\n".repeat(5000)),
        ];
        let e = filter.excerpt(&files, 1024);
        assert!(e.diff.contains("--- api/cart.go\n@@ -1 +1 @@\n-old\n+new\n"));
        assert!(!e.diff.contains("lodash") && !e.diff.contains("big.ts"));
        assert_eq!(e.omitted, ["package-lock.json", "web/logo.png", "web/big.ts"]);
        assert_eq!(e.files.len(), 4);
        assert!(e.diff.len() <= 1024);
    }

    #[test]
    fn credentials_are_withheld_line_by_line() {
        for line in [
            "+AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
            "+  token: ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "+-----BEGIN RSA PRIVATE KEY-----",
            "+password = \"hunter2hunter2\"",
            "+const apiKey = 'sk-proj-abcdefghijklmnop1234'",
            "+  client_secret: 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRg'",
        ] {
            assert!(looks_like_secret(line), "{line}");
        }
        for line in [
            "+password = os.environ[\"DB_PASSWORD\"]",
            "+token: ${{ secrets.GITHUB_TOKEN }}",
            "+func (s *Store) Token() string {",
            "+// rotate the secret every 90 days",
            "+import { CartService } from './cart-service';",
        ] {
            assert!(!looks_like_secret(line), "{line}");
        }
        let filter = Filter::new(&Globs::default()).unwrap();
        let e = filter.excerpt(&[file("api/config.go", "+password = \"hunter2hunter2\"\n+port = 8080")], 4096);
        assert_eq!(e.redacted_lines, 1);
        assert!(!e.diff.contains("hunter2") && e.diff.contains("port = 8080"));
    }
}
