//! Where pinned maps live: a bpf filesystem, mounted if missing.
use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

use ha_common::LAYOUT;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const DEFAULT_ROOT: &str = "/sys/fs/bpf";

/// Whether `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is valid; valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
}

/// Makes sure `pin_dir` exists on a bpf filesystem. When it lies under
/// /sys/fs/bpf and that is not bpffs (some distributions do not mount it),
/// mounts it there, as cilium and bpfman do. Returns the directory.
pub fn prepare(pin_dir: &Path) -> io::Result<PathBuf> {
    let root = Path::new(DEFAULT_ROOT);
    if pin_dir.starts_with(root) && !is_bpffs(root) {
        std::fs::create_dir_all(root)?;
        let src = CString::new("bpf").unwrap();
        let dst = CString::new(DEFAULT_ROOT).unwrap();
        // SAFETY: valid C strings; no data argument.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mounting bpffs on {DEFAULT_ROOT}: {e}"),
            ));
        }
        tracing::info!("mounted a bpf filesystem on {DEFAULT_ROOT}");
    }
    std::fs::create_dir_all(pin_dir)?;
    if !is_bpffs(pin_dir) {
        return Err(io::Error::other(format!(
            "{} is not on a bpf filesystem; use a pin dir under {DEFAULT_ROOT} or mount bpffs there",
            pin_dir.display()
        )));
    }
    Ok(pin_dir.to_path_buf())
}

/// The pinned file of map `name` in `pin_dir`, named with the layout version.
pub fn map_path(pin_dir: &Path, name: &str) -> PathBuf {
    // bpffs refuses names with a dot.
    pin_dir.join(format!("{name}_v{LAYOUT}"))
}
