//! .NET: the `ProjectReference` closure of a project, the packages it references (each tied to
//! its line in `Directory.Packages.props`), `Directory.Build.*` files above each project, and
//! `<Compile Include>` links to sources outside the project folder.

use std::collections::{BTreeSet, VecDeque};

use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, ancestors, file_name, join, parent};

const PROJECT_EXTENSIONS: [&str; 3] = [".csproj", ".fsproj", ".vbproj"];

pub fn is_project(path: &str) -> bool {
    PROJECT_EXTENSIONS.iter().any(|ext| path.ends_with(ext))
}

/// What one project file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Project {
    pub references: Vec<String>,
    pub packages: Vec<String>,
    /// `Compile`/`Content`/`None` includes that point outside the project folder.
    pub linked: Vec<String>,
    pub imports: Vec<String>,
}

pub fn parse_project(text: &str, path: &str) -> Project {
    let mut out = Project::default();
    let Ok(doc) = roxmltree::Document::parse(text.trim_start_matches('\u{feff}')) else { return out };
    let dir = parent(path);
    for node in doc.descendants().filter(roxmltree::Node::is_element) {
        let include = || node.attribute("Include").map(|s| s.replace('\\', "/"));
        match node.tag_name().name() {
            "ProjectReference" => out.references.extend(include().and_then(|i| join(dir, &i))),
            "PackageReference" => out.packages.extend(include()),
            "Compile" | "Content" | "None" | "EmbeddedResource" => {
                if let Some(i) = include().filter(|i| i.starts_with("..")) {
                    out.linked.extend(join(dir, &i));
                }
            }
            "Import" => {
                if let Some(p) = node.attribute("Project").map(|s| s.replace('\\', "/")).filter(|p| !p.contains("$(")) {
                    out.imports.extend(join(dir, &p));
                }
            }
            _ => {}
        }
    }
    out
}

/// A project by file name anywhere in the tree (`dotnet publish Ordering.API.csproj`).
pub fn find_project(tree: &dyn SourceTree, under: &str, name: &str) -> Option<String> {
    let name = file_name(name);
    tree.files_under(under).into_iter().find(|f| file_name(f) == name).map(str::to_owned)
}

/// The central package versions' packages (`<PackageVersion Include="X" />`).
pub fn package_versions(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = roxmltree::Document::parse(text.trim_start_matches('\u{feff}')) else { return Vec::new() };
    doc.descendants()
        .filter(|n| n.tag_name().name() == "PackageVersion")
        .filter_map(|n| Some((n.attribute("Include")?.to_owned(), n.attribute("Version").unwrap_or("").to_owned())))
        .collect()
}

/// Adds the project at `path`, its references' closure and the build files above them.
pub fn read(tree: &dyn SourceTree, path: &str, graph: &mut ServiceGraph, origin: &str) {
    graph.follow(&[".cs", ".fs", ".vb"]);
    let mut seen = BTreeSet::new();
    let mut packages = BTreeSet::new();
    let mut queue = VecDeque::from([(path.to_owned(), format!("project {path} built for {origin}"))]);
    let mut dirs = BTreeSet::new();
    while let Some((project, why)) = queue.pop_front() {
        if !seen.insert(project.clone()) || !tree.exists(&project) {
            continue;
        }
        let dir = parent(&project).to_owned();
        graph.add(Reach::File(project.clone()), why.clone());
        graph.add(Reach::Tree(dir.clone()), why);
        dirs.insert(dir);
        let Some(text) = tree.read(&project) else { continue };
        let parsed = parse_project(&text, &project);
        packages.extend(parsed.packages);
        for linked in parsed.linked {
            let why = format!("linked into {}", file_name(&project));
            if linked.contains('*') {
                if let Ok(glob) = globset::Glob::new(&linked) {
                    let matcher = glob.compile_matcher();
                    let root = linked.split('*').next().map_or("", parent).to_owned();
                    for hit in tree.files_under(&root).into_iter().filter(|f| matcher.is_match(f)) {
                        graph.add(Reach::File(hit.to_owned()), why.clone());
                    }
                }
            } else {
                graph.add(Reach::File(linked), why);
            }
        }
        for import in parsed.imports.into_iter().filter(|i| tree.exists(i)) {
            graph.add(Reach::File(import), format!("imported by {}", file_name(&project)));
        }
        for reference in parsed.references {
            let why = format!("project {reference}, referenced by {}", file_name(&project));
            queue.push_back((reference, why));
        }
    }
    // Build files apply to every project below them.
    let above: BTreeSet<&str> = dirs.iter().flat_map(|dir| ancestors(dir)).collect();
    for dir in above {
        for name in ["Directory.Build.props", "Directory.Build.targets", "global.json", "NuGet.config", "nuget.config"]
        {
            if let Some(path) = join(dir, name).filter(|p| tree.exists(p)) {
                graph.add(Reach::File(path), format!("MSBuild settings above {origin}'s projects"));
            }
        }
        if let Some(path) = join(dir, "Directory.Packages.props").filter(|p| tree.exists(p)) {
            for package in &packages {
                graph.add(
                    Reach::PackageVersion { file: path.clone(), package: package.clone() },
                    format!("version of package {package}, referenced by {origin}'s projects"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::{ANY_KEY, ChangedKeys, NoDetail};
    use crate::detect::tree::MemoryTree;

    #[test]
    fn the_reference_closure_and_central_versions_reach_the_service() {
        let tree = MemoryTree::from_files([
            (
                "Directory.Packages.props",
                "<Project><ItemGroup><PackageVersion Include=\"Npgsql\" Version=\"8\" /><PackageVersion Include=\"xunit\" Version=\"2\" /></ItemGroup></Project>",
            ),
            ("Directory.Build.props", "<Project/>"),
            (
                "src/Ordering.API/Ordering.API.csproj",
                "\u{feff}<Project Sdk=\"Microsoft.NET.Sdk.Web\"><ItemGroup><ProjectReference Include=\"..\\Ordering.Domain\\Ordering.Domain.csproj\" /><PackageReference Include=\"Npgsql\" /><Compile Include=\"..\\Shared\\*.cs\" Link=\"Shared\" /></ItemGroup></Project>",
            ),
            ("src/Ordering.API/Program.cs", ""),
            ("src/Ordering.Domain/Ordering.Domain.csproj", "<Project Sdk=\"Microsoft.NET.Sdk\" />"),
            ("src/Ordering.Domain/Order.cs", ""),
            ("src/Shared/Money.cs", ""),
            ("src/Basket.API/Basket.API.csproj", "<Project />"),
            ("src/Basket.API/Basket.cs", ""),
            (
                "tests/Ordering.UnitTests/Ordering.UnitTests.csproj",
                "<Project><ItemGroup><PackageReference Include=\"xunit\" /></ItemGroup></Project>",
            ),
        ]);
        let mut graph = ServiceGraph::default();
        read(&tree, "src/Ordering.API/Ordering.API.csproj", &mut graph, "ordering");
        let hit = |f: &str| graph.reason(f, &NoDetail).is_some();
        for f in [
            "src/Ordering.API/Program.cs",
            "src/Ordering.Domain/Order.cs",
            "src/Shared/Money.cs",
            "Directory.Build.props",
        ] {
            assert!(hit(f), "{f}");
        }
        assert!(!hit("src/Basket.API/Basket.cs"));
        let props = "Directory.Packages.props";
        assert!(graph.reason(props, &ChangedKeys(&["Npgsql"])).is_some());
        assert!(graph.reason(props, &ChangedKeys(&["xunit"])).is_none(), "a test-only package");
        assert!(graph.reason(props, &ChangedKeys(&[ANY_KEY])).is_some());
        assert_eq!(package_versions(tree.read(props).as_deref().unwrap_or("")).len(), 2);
        assert_eq!(find_project(&tree, "", "Basket.API.csproj").as_deref(), Some("src/Basket.API/Basket.API.csproj"));
    }
}
