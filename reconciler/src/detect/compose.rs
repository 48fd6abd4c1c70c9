//! docker compose: one service's block, merged across files as `docker compose -f a -f b`
//! does, its build (context, Dockerfile, args), `env_file`s, `${VAR}` references resolved
//! against the `.env` files, and bind-mounted config.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::dockerfile::{substitute, variables};
use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, join, parent};

/// What a compose service builds from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBuild {
    pub context: String,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
}

/// Deep merge: maps merge key by key, anything else is replaced (compose's override rule for
/// the fields read here).
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, other) => *slot = other,
    }
}

/// `KEY=value` lines of an env file (comments, `export` and quotes handled).
pub fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or_else(|| value.split(" #").next().unwrap_or(value));
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// The merged project: every file parsed and merged in order.
pub fn project(tree: &dyn SourceTree, files: &[String]) -> Option<Value> {
    let mut merged: Option<Value> = None;
    for file in files {
        let Some(text) = tree.read(file) else { continue };
        let Ok(value) = serde_norway::from_str::<Value>(&text) else { continue };
        match &mut merged {
            Some(m) => merge(m, value),
            None => merged = Some(value),
        }
    }
    merged
}

/// One service's block of one compose file (to compare base and head).
pub fn service_block(text: &str, service: &str) -> Option<String> {
    let value: Value = serde_norway::from_str(text).ok()?;
    let block = value.get("services")?.get(service)?;
    serde_norway::to_string(block).ok()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(list)) => list
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Mapping(_) => v.get("path").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn key_values(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                Some((k.as_str()?.to_owned(), value))
            })
            .collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| kv.split_once('=').map_or((kv.to_owned(), String::new()), |(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Adds what reaches `service` through the compose files to `graph`, and returns its build.
pub fn read(
    tree: &dyn SourceTree,
    files: &[String],
    service: &str,
    env_files: &[String],
    graph: &mut ServiceGraph,
) -> Option<ComposeBuild> {
    let project = project(tree, files)?;
    let block = project.get("services")?.get(service)?.clone();
    let base = files.first().map_or("", |f| parent(f)).to_owned();
    for file in files {
        graph.add(
            Reach::ComposeService { file: file.clone(), service: service.to_owned() },
            format!("service {service} in {file}"),
        );
    }
    // Variables: the project's `.env` and the configured env files, first value wins as in
    // compose (shell > --env-file > .env; only files are seen here).
    let mut env_paths: Vec<String> = env_files.to_vec();
    if let Some(default) = join(&base, ".env")
        && !env_paths.contains(&default)
    {
        env_paths.push(default);
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for path in env_paths.iter().rev() {
        if let Some(text) = tree.read(path) {
            vars.extend(env_file(&text));
        }
    }
    let text = serde_norway::to_string(&block).unwrap_or_default();
    let used: BTreeSet<String> = variables(&text).into_iter().collect();
    for path in env_paths.iter().filter(|p| tree.exists(p)) {
        for key in &used {
            graph.add(Reach::EnvKey { file: path.clone(), key: key.clone() }, format!("${{{key}}} used by {service}"));
        }
    }
    let resolve = |s: &str| substitute(s, &vars);
    for env in strings(block.get("env_file")) {
        if let Some(path) = join(&base, &resolve(&env)) {
            graph.add(Reach::File(path), format!("env_file of {service}"));
        }
    }
    for volume in block.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
        let source = match volume {
            Value::String(s) => s.split(':').next().map(str::to_owned),
            Value::Mapping(_) if volume.get("type").and_then(Value::as_str) == Some("bind") => {
                volume.get("source").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        };
        let Some(source) = source.map(|s| resolve(&s)) else { continue };
        if !(source.starts_with('.') || source.contains('/')) || source.starts_with('/') || source.starts_with('~') {
            continue; // a named volume or an absolute host path: not in the repository
        }
        let Some(path) = join(&base, &source) else { continue };
        let why = format!("bind-mounted into {service}");
        if tree.exists(&path) {
            graph.add(Reach::File(path), why);
        } else if tree.is_dir(&path) {
            graph.add(Reach::Tree(path), why);
        }
    }
    for kind in ["configs", "secrets"] {
        for name in strings(block.get(kind)).into_iter().chain(
            block
                .get(kind)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("source").and_then(Value::as_str).map(str::to_owned)),
        ) {
            let file = project.get(kind).and_then(|m| m.get(name.as_str())).and_then(|c| c.get("file"));
            if let Some(path) = file.and_then(Value::as_str).and_then(|f| join(&base, &resolve(f))) {
                graph.add(Reach::File(path), format!("{kind} of {service}"));
            }
        }
    }
    let build = block.get("build")?;
    let (context, dockerfile, args) = match build {
        Value::String(context) => (resolve(context), "Dockerfile".to_owned(), BTreeMap::new()),
        _ => (
            build.get("context").and_then(Value::as_str).map_or_else(|| ".".to_owned(), resolve),
            build.get("dockerfile").and_then(Value::as_str).map_or_else(|| "Dockerfile".to_owned(), resolve),
            key_values(build.get("args")).into_iter().map(|(k, v)| (k, resolve(&v))).collect(),
        ),
    };
    let context = join(&base, &context)?;
    let dockerfile = join(&context, &dockerfile)?;
    Some(ComposeBuild { context, dockerfile, args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::{ChangedKeys, NoDetail};
    use crate::detect::tree::MemoryTree;

    #[test]
    fn a_service_block_reaches_its_build_env_and_mounts() {
        let tree = MemoryTree::from_files([
            (
                "docker-compose.yml",
                "services:\n  cart:\n    image: ${IMAGE_NAME}:${IMAGE_VERSION}-cart\n    build:\n      context: ./\n      dockerfile: ${CART_DOCKERFILE}\n      args: [\"GO_VERSION=${GO_VERSION}\"]\n    env_file: [.env.cart]\n    volumes: [\"./config/cart.yaml:/etc/cart.yaml:ro\", \"data:/data\"]\n  web:\n    build: src/web\n",
            ),
            ("docker-compose.override.yml", "services:\n  cart:\n    environment:\n      - DEBUG=${DEBUG}\n"),
            (".env", "IMAGE_NAME=shop\nCART_DOCKERFILE=src/cart/Dockerfile\nGO_VERSION=1.23\n# c\nWEB_PORT=8080\n"),
            (".env.cart", "X=1"),
            ("config/cart.yaml", ""),
            ("src/cart/Dockerfile", ""),
        ]);
        let files = vec!["docker-compose.yml".to_owned(), "docker-compose.override.yml".to_owned()];
        let mut graph = ServiceGraph::default();
        let build = read(&tree, &files, "cart", &[], &mut graph);
        assert_eq!(
            build,
            Some(ComposeBuild {
                context: String::new(),
                dockerfile: "src/cart/Dockerfile".into(),
                args: BTreeMap::from([("GO_VERSION".to_owned(), "1.23".to_owned())]),
            })
        );
        assert!(graph.reason("config/cart.yaml", &NoDetail).is_some());
        assert!(graph.reason(".env.cart", &NoDetail).is_some());
        assert!(graph.reason("docker-compose.override.yml", &NoDetail).is_some());
        // Which key of .env changed decides.
        assert!(graph.reason(".env", &ChangedKeys(&["GO_VERSION"])).is_some());
        assert!(graph.reason(".env", &ChangedKeys(&["DEBUG"])).is_some(), "a key set only in the override counts");
        assert_eq!(graph.reason(".env", &ChangedKeys(&["WEB_PORT"])), None);
        let mut web = ServiceGraph::default();
        let build = read(&tree, &files, "web", &[], &mut web);
        assert_eq!(build.map(|b| b.dockerfile), Some("src/web/Dockerfile".to_owned()));
    }

    #[test]
    fn env_files_parse_like_compose() {
        let env = env_file("A=1\nexport B=\"two words\"\n# C=3\nD='x' \nE=5 # note\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("two words"));
        assert_eq!(env.get("C"), None);
        assert_eq!(env.get("D").map(String::as_str), Some("x"));
        assert_eq!(env.get("E").map(String::as_str), Some("5"));
    }
}
