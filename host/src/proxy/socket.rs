//! Binding a session's proxy socket, `in/proxy.sock`: [`bind_session_socket`].
//!
//! The socket is the session's identity (whoever can connect to it is that session), so it is
//! created mode 0600 and, when the host runs as root, handed to the container's non-root user.
//! The `in/` folder is mounted read-only in the container; connecting still works there.

use super::error::ProxyError;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The longest path `bind(2)` takes for a unix socket on Linux: `sun_path` is 108 bytes,
/// one of them the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Binds the proxy socket of one session at `path` (normally `<session>/in/proxy.sock`).
/// The host's other private sockets (`cli.sock`, `crabpot.sock`) are bound with it too.
///
/// A stale socket left by an earlier run is removed first; any other kind of file there is an
/// error ([`ProxyError::NotASocket`]). The socket gets mode 0600 and, when `owner` is
/// `Some((uid, gid))`, that owner: the container's user, which must be able to connect. A path
/// longer than a socket address can hold is bound through `/proc/self/fd`, so deep data
/// folders work.
///
/// Must be called inside a tokio runtime (the listener registers with its reactor).
pub fn bind_session_socket(
    path: &Path,
    owner: Option<(u32, u32)>,
) -> Result<UnixListener, ProxyError> {
    remove_stale_socket(path)?;
    let listener = bind(path).map_err(|source| ProxyError::Bind {
        path: path.to_owned(),
        source,
    })?;
    if let Err(source) = restrict(path, owner) {
        // Leave no socket with the wrong owner or mode behind.
        let _ = std::fs::remove_file(path);
        return Err(ProxyError::SocketPermissions {
            path: path.to_owned(),
            source,
        });
    }
    Ok(listener)
}

fn remove_stale_socket(path: &Path) -> Result<(), ProxyError> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ProxyError::Bind {
            path: path.to_owned(),
            source,
        }),
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path)
            .or_else(|error| match error.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(error),
            })
            .map_err(|source| ProxyError::Bind {
                path: path.to_owned(),
                source,
            }),
        Ok(_) => Err(ProxyError::NotASocket {
            path: path.to_owned(),
        }),
    }
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH_BYTES {
        return UnixListener::bind(path);
    }
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixListener::bind(path);
    };
    // Name the folder through an open descriptor: `/proc/self/fd/<n>/proxy.sock` is short
    // whatever the folder's real path, and the socket is created in the real folder.
    let folder_handle = std::fs::File::open(folder)?;
    let short_path =
        PathBuf::from(format!("/proc/self/fd/{}", folder_handle.as_raw_fd())).join(name);
    let listener = UnixListener::bind(&short_path);
    drop(folder_handle);
    listener
}

fn restrict(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn socket_is_private_and_replaces_a_stale_one() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("proxy.sock");
        let first = bind_session_socket(&path, None).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.mode() & 0o777, 0o600);
        drop(first);
        // The file of the dropped listener is stale now; binding again replaces it.
        let _second = bind_session_socket(&path, None).unwrap();
        tokio::net::UnixStream::connect(&path).await.unwrap();
    }

    #[tokio::test]
    async fn socket_gets_the_owner() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("proxy.sock");
        let me = std::fs::metadata(folder.path()).unwrap();
        // As root, hand the socket to `nobody`; otherwise to ourselves (the only chown allowed).
        let owner = if me.uid() == 0 {
            (65534, 65534)
        } else {
            (me.uid(), me.gid())
        };
        let _listener = bind_session_socket(&path, Some(owner)).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), owner);
        assert_eq!(metadata.mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn refuses_to_replace_a_regular_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("proxy.sock");
        std::fs::write(&path, b"not a socket").unwrap();
        let error = bind_session_socket(&path, None).unwrap_err();
        assert!(matches!(error, ProxyError::NotASocket { .. }), "{error:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }

    #[tokio::test]
    async fn long_paths_bind() {
        let folder = tempfile::tempdir().unwrap();
        let deep = folder
            .path()
            .join("g".repeat(100))
            .join("s".repeat(40))
            .join("in");
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("proxy.sock");
        assert!(path.as_os_str().len() > MAX_SOCKET_PATH_BYTES);
        let _listener = bind_session_socket(&path, None).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn missing_folder_is_a_bind_error() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("absent").join("proxy.sock");
        let error = bind_session_socket(&path, None).unwrap_err();
        assert!(matches!(error, ProxyError::Bind { .. }), "{error:?}");
    }
}
