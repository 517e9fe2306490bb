//! The XDP object embedded at build time (see build.rs).

/// The eBPF object file, 8-byte aligned as the ELF parser needs, or `None` when
/// this binary was built without `cargo xtask build-ebpf`.
#[cfg(ha_ebpf)]
pub static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(env!("HA_EBPF_OBJECT_PATH")));

#[cfg(not(ha_ebpf))]
pub static OBJECT: Option<&[u8]> = None;

/// One line for start-up logs and `inspect`.
pub fn describe() -> &'static str {
    if OBJECT.is_some() {
        "built with the XDP program"
    } else {
        "built WITHOUT the XDP program (run `cargo xtask build-ebpf`, then rebuild): adverts are timed in userspace only"
    }
}
