//! Every kernel in `kernels/` compiles with NVRTC for sm_80 and sm_90 (no GPU needed) and
//! exports the entry points the host code launches. Skipped when libnvrtc is absent,
//! unless LATDIFF_REQUIRE_NVRTC=1 (set by jobscripts/check-kernels.sh, so CI cannot skip).
//! With LATDIFF_PTX_OUT=dir the PTX is written to dir/<arch>/<kernel>.ptx for ptxas.

use latdiff::backend::kernels::{compile_ptx, missing_entries, nvrtc_available, KERNELS};

#[test]
fn every_kernel_compiles_with_nvrtc() {
    if !nvrtc_available() {
        if std::env::var("LATDIFF_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("LATDIFF_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)");
        }
        eprintln!("skipped: libnvrtc not found");
        return;
    }
    let out = std::env::var_os("LATDIFF_PTX_OUT").map(std::path::PathBuf::from);
    let mut failures = Vec::new();
    for arch in ["compute_80", "compute_90"] {
        for k in KERNELS {
            match compile_ptx(k, arch) {
                Ok(ptx) => {
                    let text = ptx.to_src();
                    let missing = missing_entries(k, &text);
                    if !missing.is_empty() {
                        failures
                            .push(format!("kernel {}.cu ({arch}): entry points missing from PTX: {missing:?}", k.name));
                    }
                    if let Some(dir) = &out {
                        let d = dir.join(arch.replace("compute_", "sm_"));
                        std::fs::create_dir_all(&d).unwrap();
                        std::fs::write(d.join(format!("{}.ptx", k.name)), text).unwrap();
                    }
                    eprintln!("ok: {}.cu for {arch}", k.name);
                }
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "{} kernel compile failure(s):\n{}", failures.len(), failures.join("\n\n"));
}
