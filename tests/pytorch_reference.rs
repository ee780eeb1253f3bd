//! The network against an independent implementation: `benches/pytorch_unet.py` (PyTorch,
//! float64) wrote the tiny preset's output, DSM loss and parameter gradients for random
//! weights into `tests/data/unet_tiny_reference.bin`, with the parameter count of every
//! preset. Regenerate with
//!   python3 benches/pytorch_unet.py --write-reference tests/data/unet_tiny_reference.bin
//! (any PyTorch 2.x CPU); this test needs no PyTorch.

use latdiff::diffusion::objective::CpuDsmWorkspace;
use latdiff::diffusion::objective::{dsm_loss_backward, dsm_loss_forward, network_output, plain_dsm_inputs};
use latdiff::nn::{Arch, Float, Network};
use serde_json::Value;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unet_tiny_reference.bin");

struct Reference {
    header: Value,
    arrays: Vec<(String, Vec<f64>)>,
}

impl Reference {
    fn load() -> Reference {
        let net = Network::new(Arch::tiny());
        let bytes = std::fs::read(FILE).unwrap_or_else(|e| {
            panic!("{FILE}: {e}; Arch::tiny()'s Fourier frequencies for the script: {:?}", net.fourier_freqs())
        });
        let nl = bytes.iter().position(|&b| b == b'\n').expect("header line");
        let header: Value = serde_json::from_slice(&bytes[..nl]).expect("JSON header");
        let mut at = nl + 1;
        let mut arrays = vec![];
        for a in header["arrays"].as_array().unwrap() {
            let n = a["len"].as_u64().unwrap() as usize;
            let v: Vec<f64> = match a["dtype"].as_str().unwrap() {
                "f32" => {
                    bytes[at..at + 4 * n].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
                }
                "f64" => bytes[at..at + 8 * n].chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                t => panic!("dtype {t}"),
            };
            at += v.len() * if a["dtype"] == "f32" { 4 } else { 8 };
            arrays.push((a["name"].as_str().unwrap().to_string(), v));
        }
        assert_eq!(at, bytes.len(), "trailing bytes");
        Reference { header, arrays }
    }
    fn get(&self, name: &str) -> &[f64] {
        &self.arrays.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("array {name}")).1
    }
}

/// Output, loss and parameter gradient of the DSM loss on the reference's inputs, in T.
fn latdiff_dsm<T: Float>(r: &Reference) -> (Vec<f64>, f64, Vec<f64>) {
    let net = Network::new(Arch::tiny());
    let (b, l) = (r.header["batch"].as_u64().unwrap() as usize, r.header["lattice"].as_u64().unwrap() as usize);
    let cast = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
    let (params, phi0, z, sigma) = (cast(r.get("params")), cast(r.get("phi0")), cast(r.get("z")), cast(r.get("sigma")));
    let (x, scale, offset) = plain_dsm_inputs(&phi0, &z, &sigma);
    let mut ws = CpuDsmWorkspace::<T>::new(&net, b, l, l);
    let mut out = vec![T::ZERO; b * l * l];
    network_output(&net, &params[..], &x, &sigma, &mut out, &mut ws).unwrap();
    let mut per = vec![T::ZERO; b];
    let loss = dsm_loss_forward(&net, &params[..], &x, &sigma, &scale, &offset, &mut per, &mut ws).unwrap();
    let mut grad = vec![T::ZERO; params.len()];
    dsm_loss_backward(&net, &params[..], &mut grad[..], &mut ws).unwrap();
    let back = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    (back(&out), loss.to_f64(), back(&grad))
}

/// max |a − b| / max |b|: one scale per tensor, so near-zero entries do not dominate.
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Same parameter tensors, in the same order, of the same shapes (a PyTorch Linear's
/// [out, in] is latdiff's 1×1 conv [out, in, 1, 1]); same count for every preset.
#[test]
fn parameter_layout_and_counts_equal_pytorch() {
    let r = Reference::load();
    let net = Network::new(Arch::tiny());
    let theirs = r.header["layout"].as_array().unwrap();
    assert_eq!(theirs.len(), net.layout.entries.len());
    for (e, t) in net.layout.entries.iter().zip(theirs) {
        let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let mut ours = e.shape.clone();
        while ours.len() > shape.len() && ours.last() == Some(&1) {
            ours.pop();
        }
        assert_eq!(ours, shape, "{} against PyTorch's {}", e.name, t["name"]);
    }
    let counts = r.header["param_counts"].as_object().unwrap();
    for name in Arch::PRESETS.split(", ") {
        let n = Network::new(Arch::preset(name).unwrap()).num_params() as u64;
        assert_eq!(Some(n), counts[name].as_u64(), "preset {name}");
    }
    assert_eq!(counts.len(), Arch::PRESETS.split(", ").count());
}

#[test]
fn fourier_frequencies_are_the_ones_pytorch_used() {
    let r = Reference::load();
    let theirs: Vec<f64> = r.header["freqs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let net = Network::new(Arch::tiny());
    // serde_json's default float parsing may miss the nearest f64 by an ulp.
    let close = theirs.len() == net.fourier_freqs().len()
        && theirs.iter().zip(net.fourier_freqs()).all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs());
    assert!(close, "{theirs:?}: put {:?} into RUST_TINY_FREQS of the script", net.fourier_freqs());
}

/// f64: the same function up to rounding (1e-12 relative; 2026-12-02: 7e-16 output, 3e-15
/// worst gradient tensor); f32: single-precision accumulation over ≤ 2·10³ terms per output
/// and ~10³ sites per gradient (1e-5 relative; 2026-12-02: 3e-7 output, 1.4e-6 gradients).
#[test]
fn output_loss_and_gradients_equal_pytorch() {
    let r = Reference::load();
    let loss_ref = r.header["loss"].as_f64().unwrap();
    for (what, (out, loss, grad), tol) in
        [("f64", latdiff_dsm::<f64>(&r), 1e-12), ("f32", latdiff_dsm::<f32>(&r), 1e-5)]
    {
        let e_out = rel_err(&out, r.get("output"));
        assert!(e_out < tol, "{what} output: relative error {e_out:.2e}");
        let e_loss = (loss - loss_ref).abs() / loss_ref;
        assert!(e_loss < tol, "{what} loss {loss} against {loss_ref}");
        let net = Network::new(Arch::tiny());
        let g_ref = r.get("grad");
        let mut worst = 0.0f64;
        for e in &net.layout.entries {
            let err = rel_err(&grad[e.range()], &g_ref[e.range()]);
            assert!(err < tol, "{what} gradient of {}: relative error {err:.2e}", e.name);
            worst = worst.max(err);
        }
        println!("{what}: relative errors: output {e_out:.1e}, loss {e_loss:.1e}, worst gradient tensor {worst:.1e}");
    }
}
