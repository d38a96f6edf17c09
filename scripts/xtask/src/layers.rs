//! The kernel's module graph (`cargo xtask layers`): which of its modules
//! name which (`crate::m`), checked to have no cycle and no arrow up into
//! `main.rs` (an item of the crate root that is not a module or a macro).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the kernel's modules under `src` (kernel/src).
pub fn kernel_graph(src: &Path) -> Result<Graph, String> {
    let main = std::fs::read_to_string(src.join("main.rs")).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut files = BTreeMap::new();
    // A `#[path = "..."]` line names the file of the `mod` after it.
    let mut path = None;
    for line in main.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("#[path = \"").and_then(|l| l.strip_suffix("\"]")) {
            path = Some(p.to_string());
        } else if let Some(m) = line.strip_prefix("mod ").or_else(|| line.strip_prefix("pub mod ")).and_then(|l| l.strip_suffix(';')) {
            let file = path.take().unwrap_or_else(|| format!("{m}.rs"));
            let mut text = std::fs::read_to_string(src.join(&file)).map_err(|e| format!("{file}: {e}"))?;
            // A directory module (`x/mod.rs`): its submodules are part of it
            // (their `super::` is the module itself). A file module's
            // `super::` is the crate root.
            if !file.ends_with("/mod.rs") {
                text = text.replace("super::", "crate::");
            } else {
                let dir = src.join(&file).parent().map(Path::to_path_buf).unwrap_or_default();
                let mut subs: Vec<_> = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "rs") && !p.ends_with("mod.rs")).collect();
                subs.sort();
                for p in subs {
                    text.push_str(&std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?);
                }
            }
            files.insert(m.to_string(), text);
        }
    }
    graph_of(&files)
}

/// The graph of `files` (module name -> source), or why it breaks the
/// layering: a name of the crate root that is neither a module nor an
/// exported macro.
pub fn graph_of(files: &BTreeMap<String, String>) -> Result<Graph, String> {
    let macros: BTreeMap<String, String> = files
        .iter()
        .flat_map(|(m, text)| {
            text.lines().filter_map(|l| l.trim().strip_prefix("macro_rules! ")?.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().map(|n| (n.to_string(), m.clone()))).collect::<Vec<_>>()
        })
        .collect();
    let mut g = Graph::new();
    for (m, text) in files {
        let deps = g.entry(m.clone()).or_default();
        // A macro used bare (`#[macro_use]`) is an edge to where it is defined.
        for (name, def) in &macros {
            if def != m && text.contains(&format!("{name}!")) {
                deps.insert(def.clone());
            }
        }
        if text.contains("crate::*") {
            return Err(format!("kernel module {m} imports crate::*: name what it uses"));
        }
        for name in crate_names(text) {
            let to = if files.contains_key(&name) {
                name
            } else if let Some(def) = macros.get(&name) {
                def.clone()
            } else {
                return Err(format!("kernel module {m} names crate::{name}, an item of main.rs: lower layers must not reach up into main.rs"));
            };
            if &to != m {
                deps.insert(to);
            }
        }
    }
    Ok(g)
}

/// Every first path segment after `crate::`, including each of a
/// `use crate::{a, b::c}` group.
fn crate_names(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item_start) = (0, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && !c.is_whitespace() => {
                        item_start = false;
                        out.insert(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// A cycle in `g` (its modules in order, the first repeated at the end).
pub fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(g: &Graph, m: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

/// `cargo xtask layers`: print the graph; fail on a cycle or an upward name.
pub fn layers_cli() -> Result<u8, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/src");
    let g = kernel_graph(&src)?;
    for (m, deps) in &g {
        println!("{m} -> {}", deps.iter().cloned().collect::<Vec<_>>().join(" "));
    }
    if let Some(c) = find_cycle(&g) {
        return Err(format!("the kernel's modules form a cycle: {}", c.join(" -> ")));
    }
    println!("layers: {} modules, no cycle, nothing reaches up into main.rs", g.len());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect()
    }

    #[test]
    fn the_kernel_has_no_cycle_and_no_upward_name() {
        let g = kernel_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/src")).unwrap();
        assert!(g.len() > 10, "too few kernel modules found: {g:?}");
        assert!(g["exits"].contains("hyp"), "the reader missed a known edge: {g:?}");
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn a_cycle_is_found() {
        let g = graph_of(&files(&[("a", "use crate::b::X;"), ("b", "use crate::{c::{Y, Z}, console};"), ("c", "crate::a::f()"), ("console", "")])).unwrap();
        assert_eq!(g["b"], ["c", "console"].iter().map(|s| s.to_string()).collect());
        assert_eq!(find_cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
        let g = graph_of(&files(&[("a", "crate::b::f(); crate::a::g()"), ("b", "")])).unwrap();
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn a_bare_macro_and_super_are_edges_and_a_glob_is_refused() {
        let console = ("console", "#[macro_export]\nmacro_rules! kprintln {\n}\nuse crate::uart::X;");
        let g = graph_of(&files(&[console, ("uart", "kprintln!(\"x\")")])).unwrap();
        assert_eq!(find_cycle(&g), Some(vec!["console".into(), "uart".into(), "console".into()]));
        assert!(graph_of(&files(&[("a", "use crate::*;")])).unwrap_err().contains("crate::*"));
    }

    #[test]
    fn a_name_of_main_is_refused_but_a_macro_is_not() {
        let e = graph_of(&files(&[("a", "crate::power_off(true)"), ("b", "")])).unwrap_err();
        assert!(e.contains("crate::power_off"), "{e}");
        let g = graph_of(&files(&[("a", "crate::kprintln!(\"x\")"), ("console", "#[macro_export]\nmacro_rules! kprintln {")])).unwrap();
        assert!(g["a"].contains("console"));
    }
}
