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

/// Every `cuda_launch!` in the sources passes as many arguments as its kernel declares, and
/// the obvious scalar forms match: `&i(..)` an `int`, `&(.. as i64)` a `long long`, a
/// pointer parameter never a scalar form. A mismatch compiles and then reads garbage on the
/// GPU, so it is checked here, where no GPU is needed.
#[test]
fn every_launch_matches_its_kernel_signature() {
    use std::collections::HashMap;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sig: HashMap<String, Vec<String>> = HashMap::new();
    for k in latdiff::backend::kernels::KERNELS {
        let mut rest = k.source;
        while let Some(p) = rest.find("__global__ void ") {
            let after = &rest[p + "__global__ void ".len()..];
            let open = after.find('(').unwrap();
            let close = after.find(')').unwrap();
            let name = after[..open].trim().to_string();
            let params = after[open + 1..close].split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            sig.insert(name, params.collect());
            rest = &after[close..];
        }
    }
    assert!(sig.len() > 20, "parsed only {} kernel signatures", sig.len());
    // Top-level comma split of one macro call's arguments.
    fn split_args(body: &str) -> Vec<String> {
        let (mut parts, mut cur, mut depth) = (vec![], String::new(), 0i32);
        for c in body.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if c == ',' && depth == 0 {
                parts.push(cur.trim().to_string());
                cur.clear();
            } else {
                cur.push(c);
            }
        }
        if !cur.trim().is_empty() {
            parts.push(cur.trim().to_string());
        }
        parts
    }
    let mut launches = 0;
    // The network's launches (backend) and the HMC engine's and theories' (mc).
    for dir in ["src/backend", "src/mc"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            let mut rest = src.as_str();
            while let Some(p) = rest.find("cuda_launch!(") {
                let body_start = p + "cuda_launch!(".len();
                let (mut depth, mut end) = (1, body_start);
                for (i, c) in rest[body_start..].char_indices() {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        end = body_start + i;
                        break;
                    }
                }
                let args = split_args(&rest[body_start..end]);
                rest = &rest[end..];
                if args.len() < 4 || !args[2].starts_with('"') {
                    continue; // the macro's own definition
                }
                let entry = args[2].trim_matches('"');
                let params = sig.get(entry).unwrap_or_else(|| panic!("{}: no kernel {entry}", path.display()));
                let given = &args[4..];
                assert_eq!(
                    given.len(),
                    params.len(),
                    "{}: {entry} takes {params:?}, launched with {given:?}",
                    path.display()
                );
                for (a, p) in given.iter().zip(params) {
                    let is_ptr = p.contains('*');
                    let ok = if a.starts_with("&i(") {
                        p.starts_with("int ")
                    } else if a.ends_with("as i64)") {
                        p.starts_with("long long ")
                    } else {
                        true
                    };
                    assert!(
                        ok && !(is_ptr && (a.starts_with("&i(") || a.contains(" as "))),
                        "{}: {entry}: argument `{a}` for parameter `{p}`",
                        path.display()
                    );
                }
                launches += 1;
            }
        }
    }
    assert!(launches > 25, "found only {launches} launches");
    eprintln!("ok: {launches} launches match their kernels' signatures");
}
