//! Compiles `bpf/xdp_guard.c` with clang (`-target bpf -O2 -g`) when clang is present.
//!
//! Without clang, or when the compile fails, the crate still builds: it records why in
//! `X0TTA_XDP_MISSING`, and loading then fails with `Error::NotBuilt` carrying that reason.
//! `X0TTA_BPF_CLANG` names the clang to use; `X0TTA_EBPF_REQUIRE=1` turns a missing program
//! into a build error (CI sets it).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/xdp_guard.c";

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=X0TTA_BPF_CLANG");
    println!("cargo::rerun-if-env-changed=X0TTA_EBPF_REQUIRE");
    println!("cargo::rustc-check-cfg=cfg(x0tta_xdp_object)");

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("xdp_guard.o");
    match compile(&out) {
        Ok(()) => {
            println!("cargo::rustc-cfg=x0tta_xdp_object");
            println!("cargo::rustc-env=X0TTA_XDP_OBJECT={}", out.display());
        }
        Err(why) => {
            if env::var("X0TTA_EBPF_REQUIRE").is_ok_and(|v| v == "1") {
                panic!("X0TTA_EBPF_REQUIRE=1 but the XDP program was not built: {why}");
            }
            println!("cargo::warning=x0tta-ebpf: XDP program not built: {why}");
            let one_line = why.replace(['\n', '\r'], " ");
            println!("cargo::rustc-env=X0TTA_XDP_MISSING={one_line}");
        }
    }
}

fn compile(out: &Path) -> Result<(), String> {
    let clang = find_clang()
        .ok_or_else(|| "clang not found (set X0TTA_BPF_CLANG or put clang on PATH)".to_string())?;
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"]);
    // Debian and Ubuntu keep `asm/types.h` under the multiarch directory, which a
    // `-target bpf` compile does not search by itself.
    if let Some(dir) = multiarch_include() {
        cmd.arg(format!("-I{}", dir.display()));
    }
    cmd.args(["-c", SOURCE, "-o"]).arg(out);
    let output = cmd.output().map_err(|e| format!("running {clang}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first: Vec<&str> = stderr.lines().take(4).collect();
    Err(format!(
        "{clang} failed ({}); are the libbpf headers installed (Debian: libbpf-dev)? {}",
        output.status,
        first.join(" | ")
    ))
}

fn find_clang() -> Option<String> {
    if let Ok(c) = env::var("X0TTA_BPF_CLANG") {
        return Some(c);
    }
    [
        "clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14",
    ]
    .into_iter()
    .find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .map(str::to_string)
}

fn multiarch_include() -> Option<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}
