//! Service detection from the repository's own build graph (docs/detection.md): from each
//! service's build roots (`build`: Dockerfiles, compose services, project manifests), the
//! ecosystem readers find the files that end up in or configure its artifact, and a changed
//! file selects exactly the services it reaches. Tests, docs, CI files and developer-only files
//! reached only through a folder never select a service; `paths` globs are still honoured.
//!
//! Pure over a [`SourceTree`]: `previewd detect` reads a checkout, the consumer reads GitHub.

pub mod changes;
pub mod compose;
pub mod dockerfile;
pub mod dotnet;
pub mod eval;
pub mod golang;
pub mod graph;
pub mod lockfile;
pub mod npm;
pub mod proto;
pub mod python;
pub mod rust;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{BuildRoot, RepositoryConfig, ServiceConfig};
use changes::Changes;
use graph::{ChangeDetail, Reach, ServiceGraph, not_deployed};
use tree::{SourceTree, is_within, join, parent};

/// What decided a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// The `paths` globs alone (no tree to read, or no service has build roots).
    Paths,
    /// The build graph (with the globs).
    Graph,
}

/// The services a change needs, and why each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub services: Vec<String>,
    /// Per service: `"<changed file> -> <how it reaches the service>"`.
    pub reasons: BTreeMap<String, Vec<String>>,
    pub by: By,
}

/// The folders a service is built from (its Dockerfiles', contexts' and projects' folders).
fn own_folders(service: &ServiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    for root in &service.build {
        out.extend(root.dockerfile.as_deref().map(|d| parent(d).to_owned()));
        out.extend(root.project.as_deref().map(|p| parent(p).to_owned()));
    }
    out
}

/// The service graph of every service with build roots, from one tree.
pub fn graphs(repo: &RepositoryConfig, tree: &dyn SourceTree) -> BTreeMap<String, ServiceGraph> {
    let folders: BTreeMap<&str, Vec<String>> =
        repo.services.iter().map(|s| (s.name.as_str(), own_folders(s))).collect();
    repo.services
        .iter()
        .filter(|s| !s.build.is_empty())
        .map(|service| {
            let others: Vec<&str> = folders
                .iter()
                .filter(|(name, _)| **name != service.name)
                .flat_map(|(_, dirs)| dirs.iter().map(String::as_str))
                .collect();
            (service.name.clone(), service_graph(service, &others, tree))
        })
        .collect()
}

fn service_graph(service: &ServiceConfig, others: &[&str], tree: &dyn SourceTree) -> ServiceGraph {
    let mut graph = ServiceGraph::default();
    let origin = service.name.as_str();
    for root in &service.build {
        read_root(root, origin, others, tree, &mut graph);
    }
    proto::follow_imports(tree, &mut graph);
    graph
}

fn read_root(root: &BuildRoot, origin: &str, others: &[&str], tree: &dyn SourceTree, graph: &mut ServiceGraph) {
    if let Some(dockerfile) = root.dockerfile.as_deref().filter(|d| tree.exists(d)) {
        let context = match root.context.as_deref() {
            Some(context) => join("", context).unwrap_or_default(),
            None => parent(dockerfile).to_owned(),
        };
        read_image(tree, dockerfile, &context, &BTreeMap::new(), origin, others, graph);
    }
    if let Some(compose) = &root.compose {
        let files: Vec<String> = compose.files.iter().filter(|f| tree.exists(f)).cloned().collect();
        if let Some(build) = compose::read(tree, &files, &compose.service, &compose.env_files, graph)
            && tree.exists(&build.dockerfile)
        {
            read_image(tree, &build.dockerfile, &build.context, &build.args, origin, others, graph);
        }
    }
    if let Some(project) = root.project.as_deref().filter(|p| tree.exists(p)) {
        read_project(tree, project, origin, graph);
    }
}

fn read_project(tree: &dyn SourceTree, project: &str, origin: &str, graph: &mut ServiceGraph) {
    let dir = parent(project);
    graph.add(Reach::File(project.to_owned()), format!("project file of {origin}"));
    if project.ends_with("go.mod") {
        let seeds = golang::packages_under(tree, dir);
        golang::read(tree, &seeds, graph, origin);
    } else if project.ends_with("package.json") {
        npm::read(tree, dir, graph, origin);
    } else if project.ends_with("Cargo.toml") {
        rust::read(tree, dir, graph, origin);
    } else if project.ends_with("pyproject.toml") {
        python::read(tree, dir, graph, origin);
    } else if dotnet::is_project(project) {
        dotnet::read(tree, project, graph, origin);
    }
}

/// Words of the `RUN` lines that follow one of `commands` (`go build ./cmd/x` -> `./cmd/x`).
fn run_arguments<'a>(runs: &'a [String], commands: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    for run in runs {
        for segment in run.split(['&', ';', '|']) {
            let words: Vec<&str> = segment.split_whitespace().collect();
            for (i, pair) in words.windows(2).enumerate() {
                if commands.iter().any(|c| c.split(' ').eq(pair.iter().copied())) {
                    out.extend(words[i + 2..].iter().copied());
                }
            }
        }
    }
    out
}

/// A path named in a `RUN` line, as a repository path: relative to the build context (the
/// usual `COPY . .` into the working directory) or to the Dockerfile's folder.
fn hinted_path(tree: &dyn SourceTree, context: &str, own: &str, word: &str) -> Option<String> {
    let word = word.trim_matches(['"', '\'']).trim_end_matches("/...");
    if word.starts_with('-') || word.contains('$') {
        return None;
    }
    let word = word.strip_prefix('/').map_or(word, |w| w.split_once('/').map_or(w, |(_, rest)| rest));
    [context, own]
        .into_iter()
        .filter_map(|base| join(base, word))
        .find(|p| tree.exists(p) || tree.is_dir(p) && !p.is_empty())
}

/// A Dockerfile: the files its `COPY`/`ADD` take from the context, and the language graph of
/// the project it builds. A copied folder that holds another service's folder (a blanket
/// `COPY . .` of a monorepo) selects nothing by itself: the language graph decides.
fn read_image(
    tree: &dyn SourceTree,
    dockerfile: &str,
    context: &str,
    args: &BTreeMap<String, String>,
    origin: &str,
    others: &[&str],
    graph: &mut ServiceGraph,
) {
    let own = parent(dockerfile);
    // A context that holds other services (the repository root of a monorepo) is not itself
    // the project this image builds.
    let context_is_shared = context.is_empty() || others.iter().any(|o| is_within(o, context) && !is_within(o, own));
    let roots: Vec<&str> = if context_is_shared { vec![own] } else { vec![own, context] };
    graph.add(Reach::File(dockerfile.to_owned()), format!("Dockerfile of {origin}"));
    let file = dockerfile::read(tree, dockerfile, context, args);
    let mut broad = false;
    for copied in &file.copies {
        let why = format!("{} on line {} of {dockerfile}", copied.instruction, copied.line);
        if !copied.is_dir {
            graph.add(Reach::File(copied.path.clone()), why);
        } else if copied.path.is_empty() || others.iter().any(|o| is_within(o, &copied.path) && !is_within(o, own)) {
            broad = true;
        } else {
            graph.add(Reach::Copied(copied.path.clone()), why);
        }
    }
    // Go: the packages `go build` names, else those in the Dockerfile's folder.
    let go_root =
        roots.iter().any(|d| has_above(tree, d, "go.mod")) || file.copies.iter().any(|c| c.path.ends_with("go.mod"));
    if go_root {
        let mut seeds: Vec<String> = run_arguments(&file.runs, &["go build", "go install"])
            .into_iter()
            .filter_map(|w| hinted_path(tree, context, own, w))
            .filter(|p| golang::is_package(tree, p))
            .collect();
        if seeds.is_empty() {
            seeds = if golang::is_package(tree, own) {
                vec![own.to_owned()]
            } else {
                let under_own = golang::packages_under(tree, own);
                if under_own.is_empty() && broad { golang::packages_under(tree, context) } else { under_own }
            };
        }
        golang::read(tree, &seeds, graph, origin);
    }
    // .NET: the projects `dotnet publish/build/restore` names, else those beside the Dockerfile.
    let mut projects: Vec<String> = run_arguments(&file.runs, &["dotnet publish", "dotnet build", "dotnet restore"])
        .into_iter()
        .map(|w| w.trim_matches(['"', '\'']))
        .filter(|w| dotnet::is_project(w))
        .filter_map(|w| hinted_path(tree, context, own, w).or_else(|| dotnet::find_project(tree, context, w)))
        .collect();
    if projects.is_empty() {
        projects = tree
            .files_under(own)
            .into_iter()
            .filter(|f| parent(f) == own && dotnet::is_project(f))
            .map(str::to_owned)
            .collect();
    }
    for project in projects.iter().collect::<BTreeSet<_>>() {
        dotnet::read(tree, project, graph, origin);
    }
    // JavaScript: the workspace package named by -w/--workspace/--filter, else the package
    // beside the Dockerfile or at the context.
    let named = run_arguments(&file.runs, &["npm run", "npm ci", "pnpm --filter", "yarn workspace", "npm install"])
        .into_iter()
        .filter_map(|w| w.strip_prefix("--workspace=").or_else(|| w.strip_prefix("-w=")).or(Some(w)))
        .find_map(|name| npm::package_named(tree, context, name));
    if let Some(dir) = named.or_else(|| roots.iter().find(|d| npm::is_package(tree, d)).map(|d| (*d).to_owned())) {
        npm::read(tree, &dir, graph, origin);
    }
    if let Some(dir) = roots.iter().find(|d| join(d, "Cargo.toml").is_some_and(|p| tree.exists(&p))) {
        rust::read(tree, dir, graph, origin);
    }
    if let Some(dir) = roots.iter().find(|d| python::is_project(tree, d)) {
        python::read(tree, dir, graph, origin);
    }
}

fn has_above(tree: &dyn SourceTree, dir: &str, name: &str) -> bool {
    tree::ancestors(dir).any(|at| join(at, name).is_some_and(|p| tree.exists(&p)))
}

/// The services `changed` needs. `head` (and `base`, for deleted files and for telling what
/// changed in an env or compose file) are the trees at the PR's commits; without `head`, the
/// `paths` globs decide alone. `patch` is the PR's unified diff, when known.
pub fn detect(
    repo: &RepositoryConfig,
    changed: &[String],
    head: Option<&dyn SourceTree>,
    base: Option<&dyn SourceTree>,
    patch: Option<&str>,
) -> Detection {
    let graphed = head.is_some() && repo.services.iter().any(|s| !s.build.is_empty() || !s.manifests.is_empty());
    let head_graphs = head.map(|t| graphs(repo, t)).unwrap_or_default();
    let base_graphs = base.filter(|_| graphed).map(|t| graphs(repo, t)).unwrap_or_default();
    let detail: Box<dyn ChangeDetail> = match head {
        Some(head) => Box::new(Changes::new(changed, patch, head, base)),
        None => Box::new(graph::NoDetail),
    };
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut always = Vec::new();
    for service in &repo.services {
        let graphs: Vec<&ServiceGraph> =
            [head_graphs.get(&service.name), base_graphs.get(&service.name)].into_iter().flatten().collect();
        let has_graph = graphs.iter().any(|g| !g.edges.is_empty());
        if !has_graph && service.paths.is_empty() && service.manifests.is_empty() {
            always.push(service.name.as_str());
            continue;
        }
        let mut found = Vec::new();
        for file in changed {
            let why = graphs
                .iter()
                .find_map(|g| g.reason(file, detail.as_ref()))
                .or_else(|| {
                    service.manifests.is_match(file).then(|| format!("{file} -> manifests of {}", service.name))
                })
                .or_else(|| {
                    // With a graph, a glob does not select tests, docs or CI files on its own.
                    let counts = !has_graph || not_deployed(file).is_none();
                    (counts && service.paths.is_match(file)).then(|| format!("{file} -> paths of {}", service.name))
                });
            found.extend(why);
        }
        if !found.is_empty() {
            reasons.insert(service.name.clone(), found);
        }
    }
    if !reasons.is_empty() {
        for name in always {
            reasons.insert(
                name.to_owned(),
                vec![format!("{name} has no paths or build roots: it comes with any service")],
            );
        }
    }
    let services = repo.services.iter().filter(|s| reasons.contains_key(&s.name)).map(|s| s.name.clone()).collect();
    Detection { services, reasons, by: if graphed { By::Graph } else { By::Paths } }
}

#[cfg(test)]
mod tests;
