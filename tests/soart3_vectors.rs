//! `inspectord::soart3::soart3` against independent SOART3 values computed with scipy's
//! `minkowski` by `tests/data/soart3/make_vectors.py` (`tests/data/soart3/vectors.json`).

use std::path::Path;

use inspectord::soart3::{Orders, soart3};
use serde_json::Value;

/// Relative tolerance, or absolute near zero (numpy's `log(1 + x)` vs `ln_1p` and summation
/// order differ in the last bits; a wrong formula differs by far more).
const TOL: f64 = 1e-12;

fn close(got: f64, want: f64) -> bool {
    let diff = (got - want).abs();
    diff <= TOL * want.abs() || diff <= TOL
}

/// The vector as `f32`; the generator rounds its inputs to float32, so this is exact.
fn f32_vector(case: &str, name: &str, v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("{case}: `{name}` is not an array"))
        .iter()
        .map(|x| {
            let x = x.as_f64().unwrap_or_else(|| panic!("{case}: `{name}` holds a non-number"));
            let y = x as f32;
            assert_eq!(
                f64::from(y),
                x,
                "{case}: `{name}` value {x:?} is not exactly representable as f32, but the daemon's \
                 embeddings are f32; regenerate the vectors (make_vectors.py rounds inputs to float32)"
            );
            y
        })
        .collect()
}

#[test]
fn soart3_matches_scipy_vectors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/soart3/vectors.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&text).expect("vectors.json is a JSON array");
    assert!(!cases.is_empty(), "no cases in {}", path.display());

    let mut failures = Vec::new();
    let mut orders_seen = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let name = format!("case {i} ({})", c["name"].as_str().unwrap_or("?"));
        let x = f32_vector(&name, "x", &c["x"]);
        let y = f32_vector(&name, "y", &c["y"]);
        assert_eq!(x.len(), y.len(), "{name}: x and y differ in length");
        let num = |k: &str| {
            c[k].as_f64()
                .unwrap_or_else(|| panic!("{name}: `{k}` is not a number"))
        };
        let orders = Orders {
            eta_p: num("eta_p"),
            gamma_p: num("gamma_p"),
        };
        if !orders_seen.contains(&(orders.eta_p, orders.gamma_p)) {
            orders_seen.push((orders.eta_p, orders.gamma_p));
        }
        let got = soart3(&x, &y, orders);
        for (field, got, want) in [
            ("beta", got.beta, num("beta")),
            ("eta", got.eta, num("eta")),
            ("gamma", got.gamma, num("gamma")),
        ] {
            if !close(got, want) {
                failures.push(format!(
                    "{name} orders ({}, {}): {field} = {got:e}, scipy says {want:e} (diff {:e})",
                    orders.eta_p,
                    orders.gamma_p,
                    (got - want).abs()
                ));
            }
        }
    }
    for want in [(2.0, 6.0), (1.0, 4.0)] {
        assert!(
            orders_seen.contains(&want),
            "vectors.json has no case with orders {want:?} (has {orders_seen:?})"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} values differ:\n{}",
        failures.len(),
        cases.len() * 3,
        failures.join("\n")
    );
}
