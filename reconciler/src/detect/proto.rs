//! Protocol Buffers: a `.proto` the service builds from reaches it together with every file it
//! imports (resolved against the importing file's folder and each folder above it, as include
//! roots commonly are).

use std::collections::{BTreeSet, VecDeque};

use super::graph::{Reach, ServiceGraph};
use super::tree::{SourceTree, ancestors, join, parent};

pub fn imports(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("import ")?;
            let rest = rest.trim_start_matches("public ").trim_start_matches("weak ");
            rest.split('"').nth(1).map(str::to_owned)
        })
        .filter(|path| !path.starts_with("google/protobuf/"))
        .collect()
}

fn resolve(tree: &dyn SourceTree, from: &str, import: &str) -> Option<String> {
    ancestors(parent(from)).find_map(|at| join(at, import).filter(|c| tree.exists(c)))
}

/// Adds what the `.proto` files already in `graph` import.
pub fn follow_imports(tree: &dyn SourceTree, graph: &mut ServiceGraph) {
    let reached: Vec<String> = tree
        .paths()
        .iter()
        .filter(|p| p.ends_with(".proto") && graph.reason(p, &super::graph::NoDetail).is_some())
        .cloned()
        .collect();
    let mut seen: BTreeSet<String> = reached.iter().cloned().collect();
    let mut queue: VecDeque<String> = reached.into();
    while let Some(file) = queue.pop_front() {
        let Some(text) = tree.read(&file) else { continue };
        for import in imports(&text) {
            if let Some(target) = resolve(tree, &file, &import)
                && seen.insert(target.clone())
            {
                graph.add(Reach::File(target.clone()), format!("imported by {file}"));
                queue.push_back(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::graph::NoDetail;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn imported_protos_reach_the_service() {
        let tree = MemoryTree::from_files([
            (
                "protos/cart.proto",
                "syntax = \"proto3\";\nimport \"common/money.proto\";\nimport \"google/protobuf/empty.proto\";\n",
            ),
            ("protos/common/money.proto", "import public \"common/currency.proto\";\n"),
            ("protos/common/currency.proto", ""),
            ("protos/common/unused.proto", ""),
        ]);
        let mut graph = ServiceGraph::default();
        graph.add(Reach::File("protos/cart.proto".into()), "COPY");
        follow_imports(&tree, &mut graph);
        assert!(graph.reason("protos/common/money.proto", &NoDetail).is_some());
        assert!(graph.reason("protos/common/currency.proto", &NoDetail).is_some());
        assert!(graph.reason("protos/common/unused.proto", &NoDetail).is_none());
    }
}
