//! [`Workspace`]: the agent's working directory (`/session/work`) and the rule that confines
//! the file tools to it. A path is resolved relative to the root; an absolute path must lie
//! under it; `..` may not climb out; and symlinks are followed before the check, so a link
//! that points outside is refused too ([`WorkspaceError`]).
//!
//! This confinement makes the tools predictable and their errors clear. It is not the
//! security boundary: `bash` can reach anything the container can, and the container is
//! what keeps the agent in.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused. Never retryable as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkspaceError {
    #[error(
        "{path:?} is outside the workspace {root}: file tools only use files under it (give a path relative to it)"
    )]
    Outside { path: String, root: String },
    #[error("{path:?} leads outside the workspace {root} through a symbolic link")]
    SymlinkEscape { path: String, root: String },
    #[error("the path is empty")]
    Empty,
    #[error("the workspace {root} cannot be opened: {reason}")]
    Unavailable { root: String, reason: String },
}

/// The agent's working directory.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root as configured (`/session/work` in the container).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn root_text(&self) -> String {
        self.root.display().to_string()
    }

    /// The root with symlinks resolved.
    fn canonical_root(&self) -> Result<PathBuf, WorkspaceError> {
        self.root
            .canonicalize()
            .map_err(|error| WorkspaceError::Unavailable {
                root: self.root_text(),
                reason: error.to_string(),
            })
    }

    /// Resolves `path` (relative to the root, or absolute under it) to a real path inside
    /// the workspace. The path need not exist; its existing part must not leave the
    /// workspace, through `..` or through a symlink.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, WorkspaceError> {
        if path.trim().is_empty() {
            return Err(WorkspaceError::Empty);
        }
        let outside = || WorkspaceError::Outside {
            path: path.to_owned(),
            root: self.root_text(),
        };
        let canonical_root = self.canonical_root()?;
        let given = Path::new(path);
        let relative = if given.is_absolute() {
            let normal = normalize(given).ok_or_else(outside)?;
            let configured = normalize(&self.root).unwrap_or_else(|| self.root.clone());
            match normal
                .strip_prefix(&configured)
                .or_else(|_| normal.strip_prefix(&canonical_root))
            {
                Ok(rest) => rest.to_path_buf(),
                Err(_) => return Err(outside()),
            }
        } else {
            given.to_path_buf()
        };
        let lexical = normalize(&canonical_root.join(&relative)).ok_or_else(outside)?;
        if !lexical.starts_with(&canonical_root) {
            return Err(outside());
        }
        // Follow symlinks in the part of the path that exists, then re-attach the rest.
        let mut existing = lexical.clone();
        let mut missing = Vec::new();
        let real = loop {
            match existing.canonicalize() {
                Ok(real) => break real,
                Err(_) => {
                    let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                        return Err(outside());
                    };
                    missing.push(name);
                    if !existing.pop() {
                        return Err(outside());
                    }
                }
            }
        };
        if !real.starts_with(&canonical_root) {
            return Err(WorkspaceError::SymlinkEscape {
                path: path.to_owned(),
                root: self.root_text(),
            });
        }
        // A dangling symlink is "missing" to canonicalize; refuse one pointing outside.
        if let Some(first_missing) = missing.last() {
            let candidate = real.join(first_missing);
            if let Ok(target) = std::fs::read_link(&candidate) {
                let target = if target.is_absolute() {
                    target
                } else {
                    real.join(target)
                };
                if !normalize(&target).is_some_and(|t| t.starts_with(&canonical_root)) {
                    return Err(WorkspaceError::SymlinkEscape {
                        path: path.to_owned(),
                        root: self.root_text(),
                    });
                }
            }
        }
        Ok(missing
            .into_iter()
            .rev()
            .fold(real, |path, name| path.join(name)))
    }

    /// How a resolved path is shown to the model: relative to the root (`.` for the root).
    pub fn display(&self, path: &Path) -> String {
        let relative = self
            .canonical_root()
            .ok()
            .and_then(|root| path.strip_prefix(root).ok().map(Path::to_path_buf))
            .or_else(|| path.strip_prefix(&self.root).ok().map(Path::to_path_buf));
        match relative {
            Some(relative) if relative.as_os_str().is_empty() => ".".to_owned(),
            Some(relative) => relative.display().to_string(),
            None => path.display().to_string(),
        }
    }
}

/// Removes `.` and resolves `..` lexically; `None` when `..` climbs above the root of an
/// absolute path or the start of a relative one.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                out.pop();
                depth -= 1;
            }
            Component::Normal(name) => {
                out.push(name);
                depth += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Workspace, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("work");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("nothing"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("src", root.join("inside")).unwrap();
        (dir, Workspace::new(root), outside)
    }

    #[test]
    fn resolution_table() {
        let (_dir, workspace, _outside) = setup();
        let root = workspace.root().canonicalize().unwrap();
        let root_text = workspace.root().display().to_string();
        let check =
            |path: &str, expected: Result<&str, &str>| match (workspace.resolve(path), expected) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(got, root.join(want), "{path}");
                    assert!(got.starts_with(&root));
                }
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{path}: {error}")
                }
                (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
            };
        check("src/main.rs", Ok("src/main.rs"));
        check("./src/../src/main.rs", Ok("src/main.rs"));
        check("new/dir/file.txt", Ok("new/dir/file.txt"));
        check(".", Ok(""));
        check("inside/main.rs", Ok("src/main.rs"));
        check(&format!("{root_text}/src/main.rs"), Ok("src/main.rs"));
        check(&format!("{}/src", root.display()), Ok("src"));
        check("../outside.txt", Err("is outside the workspace"));
        check("src/../../x", Err("is outside the workspace"));
        check("/etc/passwd", Err("is outside the workspace"));
        check("/", Err("is outside the workspace"));
        check("escape/secret", Err("through a symbolic link"));
        check("escape/new-file", Err("through a symbolic link"));
        check("dangling", Err("through a symbolic link"));
        check("", Err("the path is empty"));
    }

    #[test]
    fn display_is_relative() {
        let (_dir, workspace, _outside) = setup();
        let path = workspace.resolve("src/main.rs").unwrap();
        assert_eq!(workspace.display(&path), "src/main.rs");
        assert_eq!(workspace.display(&workspace.resolve(".").unwrap()), ".");
    }
}
