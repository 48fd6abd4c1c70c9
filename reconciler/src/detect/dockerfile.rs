//! Dockerfiles: which files of the build context a `COPY`/`ADD` takes into the image, with
//! `ARG`s resolved (build args first, then the `ARG` defaults), and the `RUN` lines that name
//! the project built. `COPY --from` (another stage or image) takes nothing from the context.

use std::collections::BTreeMap;

use super::tree::{SourceTree, is_within, join};

/// One source of a `COPY`/`ADD`, resolved against the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Repository-relative path of a file or folder ("" is the repository root).
    pub path: String,
    pub is_dir: bool,
    /// `COPY` or `ADD`, and the line it is on.
    pub instruction: &'static str,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerfile {
    pub copies: Vec<Copied>,
    /// Every `RUN` command, arguments resolved (to find `go build ./cmd/x`, `dotnet publish`…).
    pub runs: Vec<String>,
}

/// Logical lines: continuations joined, comments and blank lines dropped; each with the line
/// number it starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        let (body, continued) = match trimmed.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (trimmed, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !continued && let Some(done) = current.take().filter(|(_, l)| !l.trim().is_empty()) {
            out.push(done);
        }
    }
    out.extend(current.filter(|(_, l)| !l.trim().is_empty()));
    out
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` replaced from `vars`; unknown names become "".
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let expr = &inner[..end];
            let (name, default) = match expr.split_once(":-").or_else(|| expr.split_once('-')) {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let value = vars.get(name).filter(|v| !v.is_empty()).map(String::as_str).or(default).unwrap_or("");
            out.push_str(value);
            rest = &inner[end + 1..];
            continue;
        }
        let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The names `$NAME` / `${NAME…}` used in `text`.
pub fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let body = rest.strip_prefix('{').unwrap_or(rest);
        let len = body.chars().take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_').count();
        if len > 0 {
            names.push(body[..len].to_owned());
        }
    }
    names
}

/// Splits an instruction's arguments: the JSON array form or whitespace-separated words.
fn words(args: &str) -> Vec<String> {
    let args = args.trim();
    if args.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(args)
    {
        return list;
    }
    args.split_whitespace().map(str::to_owned).collect()
}

/// Reads `dockerfile` (repository path) built with `context` and `build_args`.
pub fn read(
    tree: &dyn SourceTree,
    dockerfile: &str,
    context: &str,
    build_args: &BTreeMap<String, String>,
) -> Dockerfile {
    let Some(text) = tree.read(dockerfile) else { return Dockerfile::default() };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Dockerfile::default();
    for (line, logical) in logical_lines(&text) {
        let (instruction, args) = logical.split_once(char::is_whitespace).unwrap_or((logical.as_str(), ""));
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => {
                // Each stage starts over with the build args it declares (global ARGs are
                // visible to FROM only): keep the values, they are re-declared by name.
            }
            "ARG" | "ENV" => {
                for word in words(args) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n.to_owned(), Some(d.trim_matches('"').to_owned())),
                        None => (word.clone(), None),
                    };
                    // `ARG NAME` in a stage re-declares a global ARG: it keeps that value.
                    let value = build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| vars.get(&name).cloned())
                        .unwrap_or_default();
                    let value = substitute(&value, &vars);
                    vars.insert(name, value);
                }
            }
            kind @ ("COPY" | "ADD") => {
                let instruction = if kind == "COPY" { "COPY" } else { "ADD" };
                let mut list = words(args);
                if list.iter().any(|w| w.starts_with("--from")) {
                    continue;
                }
                list.retain(|w| !w.starts_with("--"));
                let Some((_, sources)) = list.split_last() else { continue };
                for source in sources {
                    let source = substitute(source, &vars);
                    if source.contains("://") || source.starts_with("git@") {
                        continue;
                    }
                    out.copies.extend(resolve(tree, context, &source, instruction, line));
                }
            }
            "RUN" => out.runs.push(substitute(args, &vars)),
            _ => {}
        }
    }
    out
}

/// One `COPY` source: a file, a folder, or a glob over the context.
fn resolve(tree: &dyn SourceTree, context: &str, source: &str, instruction: &'static str, line: usize) -> Vec<Copied> {
    let Some(path) = join(context, source) else { return Vec::new() };
    if !is_within(&path, context) {
        return Vec::new();
    }
    let copied = |path: String, is_dir| Copied { path, is_dir, instruction, line };
    if source.contains(['*', '?', '[']) {
        let Ok(glob) = globset::GlobBuilder::new(&path).literal_separator(true).build() else { return Vec::new() };
        let matcher = glob.compile_matcher();
        let mut found: Vec<Copied> = Vec::new();
        for file in tree.files_under(context) {
            if matcher.is_match(file) {
                found.push(copied(file.to_owned(), false));
                continue;
            }
            // A glob that names folders (`src/*/`) takes each matching folder.
            let mut dir = super::tree::parent(file);
            while is_within(dir, context) && !dir.is_empty() {
                if matcher.is_match(dir) {
                    if !found.iter().any(|c| c.path == dir) {
                        found.push(copied(dir.to_owned(), true));
                    }
                    break;
                }
                dir = super::tree::parent(dir);
            }
        }
        return found;
    }
    if tree.exists(&path) {
        vec![copied(path, false)]
    } else if tree.is_dir(&path) {
        vec![copied(path, true)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tree::MemoryTree;

    #[test]
    fn copies_are_resolved_against_the_context_with_args() {
        let tree = MemoryTree::from_files([
            (
                "src/cart/Dockerfile",
                "# syntax=docker/dockerfile:1\nARG APP=cart\nFROM golang:1.23 AS build\nARG APP\nWORKDIR /src\n\
                 COPY go.mod go.sum ./\nCOPY --chown=1000 ${APP}/ ./${APP}/\nCOPY --from=build /out /out\n\
                 COPY [\"config/app.yaml\", \"/etc/\"]\nCOPY proto/*.proto /proto/\n\
                 RUN go build \\\n  -o /out/app ./cmd/${APP}\n",
            ),
            ("src/cart/go.mod", "module x"),
            ("src/cart/go.sum", ""),
            ("src/cart/cart/main.go", ""),
            ("src/cart/config/app.yaml", ""),
            ("src/cart/proto/a.proto", ""),
            ("src/cart/proto/b.txt", ""),
        ]);
        let file = read(&tree, "src/cart/Dockerfile", "src/cart", &BTreeMap::new());
        let paths: Vec<(&str, bool)> = file.copies.iter().map(|c| (c.path.as_str(), c.is_dir)).collect();
        assert_eq!(
            paths,
            vec![
                ("src/cart/go.mod", false),
                ("src/cart/go.sum", false),
                ("src/cart/cart", true),
                ("src/cart/config/app.yaml", false),
                ("src/cart/proto/a.proto", false),
            ]
        );
        assert_eq!(file.runs, vec!["go build -o /out/app ./cmd/cart".to_owned()]);
    }

    #[test]
    fn a_build_arg_overrides_the_default_and_urls_are_not_context_files() {
        let tree = MemoryTree::from_files([
            ("Dockerfile", "ARG SERVICE=a\nCOPY src/${SERVICE} /app\nADD https://example.com/x.tgz /x\n"),
            ("src/a/x", ""),
            ("src/b/x", ""),
        ]);
        let args = BTreeMap::from([("SERVICE".to_owned(), "b".to_owned())]);
        let file = read(&tree, "Dockerfile", "", &args);
        assert_eq!(file.copies.len(), 1);
        assert_eq!(file.copies[0].path, "src/b");
    }

    #[test]
    fn substitution_and_variable_names() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(substitute("$A-${A}-${B:-2}-${A:-3}-$", &vars), "1-1-2-1-$");
        assert_eq!(variables("${X}:$Y_Z and ${W:-d}"), vec!["X", "Y_Z", "W"]);
    }
}
