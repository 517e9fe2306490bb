//! Reading secrets (the quorum key, the Redis password, a TLS client key)
//! the way OpenSSH reads a private key: a file that group or others may
//! read or write is refused, naming its mode and the fix, instead of being
//! used in silence.
use std::{io::Read, os::unix::fs::PermissionsExt, path::Path};

/// A secret file's size limit: keys and passwords are small; this keeps a
/// wrong path (a log, a device) from being read whole.
const MAX_SECRET: u64 = 64 * 1024;

/// The bytes of the secret file at `path`; `what` names the setting
/// (`key_file`, `password_file`...) in errors.
pub fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let f = std::fs::File::open(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    // The mode of the file opened, not of whatever the path names later.
    let meta = f.metadata().map_err(|e| format!("{what} {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} {shown}: mode {mode:04o} lets group or others {} it; a secret must be readable by its owner only: `chmod 600 {shown}`",
            if mode & 0o044 != 0 { "read" } else { "change" }
        ));
    }
    if !meta.is_file() {
        return Err(format!("{what} {shown}: not a regular file"));
    }
    if meta.len() > MAX_SECRET {
        return Err(format!(
            "{what} {shown}: {} bytes; a key or password file holds at most {MAX_SECRET}",
            meta.len()
        ));
    }
    let mut b = Vec::new();
    f.take(MAX_SECRET)
        .read_to_end(&mut b)
        .map_err(|e| format!("{what} {shown}: {e}"))?;
    Ok(b)
}

/// A password file's first line (trailing blanks dropped); an empty one is
/// an error.
pub fn read_password(path: &Path) -> Result<String, String> {
    let text = String::from_utf8(read(path, "password_file")?)
        .map_err(|_| format!("password_file {}: not UTF-8 text", path.display()))?;
    let pass = text.lines().next().unwrap_or("").trim_end().to_owned();
    if pass.is_empty() {
        return Err(format!(
            "password_file {}: empty first line",
            path.display()
        ));
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_others_can_read_is_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("ha-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k");
        std::fs::write(&p, "0123456789abcdef").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o644, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = read(&p, "key_file");
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.contains(&format!("mode {mode:04o}")) && e.contains("chmod 600"),
                    "{e}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
