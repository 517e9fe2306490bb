//! Embeds the XDP object built by `cargo xtask build-ebpf` when it exists.
//!
//! Without it (no bpf-linker on this machine) the daemon still builds, with
//! `ebpf::object::OBJECT == None`, and says at start-up that it runs without XDP.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ha_ebpf)");
    println!("cargo::rerun-if-env-changed=HA_EBPF_OBJECT");
    let object = match env::var_os("HA_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
            let dir = manifest.join("../target/ebpf");
            // Watching the directory (created if missing) instead of the file
            // avoids a rebuild on every build while no object exists.
            let _ = std::fs::create_dir_all(&dir);
            println!("cargo::rerun-if-changed={}", dir.display());
            dir.join("ha-ebpf.o")
        }
    };
    if object.is_file() {
        println!("cargo::rerun-if-changed={}", object.display());
        println!("cargo::rustc-cfg=ha_ebpf");
        println!("cargo::rustc-env=HA_EBPF_OBJECT_PATH={}", object.display());
    } else {
        println!(
            "cargo::warning=no eBPF object at {}: building ha-daemon without XDP (run `cargo xtask build-ebpf`)",
            object.display()
        );
    }
}
