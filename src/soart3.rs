//! The SOART3 metric between a frame embedding `y` and a reference embedding `x`.
//!
//! ```text
//! beta  = (x·y + 0.0001) / (x·x + 0.0001)
//! r     = y − beta·x
//! eta   = ln(1 + ‖r‖_p_eta)                     (default p_eta = 2, Euclidean)
//! gamma = eta − ln(1 + ‖r‖_p_gamma)             (default p_gamma = 6)
//! ‖r‖_p = (Σ|r_i|^p)^(1/p)                       (scipy.spatial.distance.minkowski)
//! ```
//!
//! Pure: no I/O, no allocation. Everything is computed in `f64` from the `f32` inputs and
//! nothing is rounded inside the computation.

/// The regulariser added to both dot products of `beta`.
pub const EPSILON: f64 = 0.0001;

/// The Minkowski orders accepted for `eta` and `gamma`, from the config and from reference
/// files alike (below 1 the "norm" is no norm; above 64 `r^p` overflows for ordinary values).
pub const ORDER_RANGE: std::ops::RangeInclusive<f64> = 1.0..=64.0;

/// The Minkowski orders used for `eta` and `gamma`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orders {
    pub eta_p: f64,
    pub gamma_p: f64,
}

impl Orders {
    /// eta with the Euclidean norm, gamma with p = 6 (the current metric).
    pub const DEFAULT: Orders = Orders {
        eta_p: 2.0,
        gamma_p: 6.0,
    };
    /// The older variant: Manhattan eta, p = 4 gamma.
    pub const LEGACY: Orders = Orders {
        eta_p: 1.0,
        gamma_p: 4.0,
    };
}

impl Default for Orders {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The three SOART3 quantities of one (frame, reference) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Soart3 {
    pub beta: f64,
    pub eta: f64,
    pub gamma: f64,
}

/// SOART3 of frame embedding `y` against reference embedding `x`.
///
/// # Panics
/// If `x` and `y` differ in length (a programming error: the caller checks dimensions once at
/// load time).
pub fn soart3(x: &[f32], y: &[f32], orders: Orders) -> Soart3 {
    assert_eq!(x.len(), y.len(), "SOART3 needs embeddings of equal length");
    let (mut xy, mut xx) = (0.0f64, 0.0f64);
    for (&xi, &yi) in x.iter().zip(y) {
        let (xi, yi) = (f64::from(xi), f64::from(yi));
        xy += xi * yi;
        xx += xi * xi;
    }
    let beta = (xy + EPSILON) / (xx + EPSILON);
    let mut acc_eta = 0.0f64;
    let mut acc_gamma = 0.0f64;
    for (&xi, &yi) in x.iter().zip(y) {
        let r = (f64::from(yi) - beta * f64::from(xi)).abs();
        acc_eta += pow_abs(r, orders.eta_p);
        acc_gamma += pow_abs(r, orders.gamma_p);
    }
    let norm_eta = root(acc_eta, orders.eta_p);
    let norm_gamma = root(acc_gamma, orders.gamma_p);
    let eta = norm_eta.ln_1p();
    let gamma = eta - norm_gamma.ln_1p();
    Soart3 { beta, eta, gamma }
}

/// `r^p` for `r >= 0`, with exact products for the small integer orders the metric uses.
#[inline]
fn pow_abs(r: f64, p: f64) -> f64 {
    if p == 1.0 {
        r
    } else if p == 2.0 {
        r * r
    } else if p == 4.0 {
        let r2 = r * r;
        r2 * r2
    } else if p == 6.0 {
        let r2 = r * r;
        r2 * r2 * r2
    } else {
        r.powf(p)
    }
}

/// `s^(1/p)`, exact for p = 1 and 2.
#[inline]
fn root(s: f64, p: f64) -> f64 {
    if p == 1.0 {
        s
    } else if p == 2.0 {
        s.sqrt()
    } else {
        s.powf(1.0 / p)
    }
}

/// The Minkowski distance of order `p` of a vector from the origin, as scipy's `minkowski`.
pub fn minkowski_norm(r: &[f64], p: f64) -> f64 {
    root(r.iter().map(|v| pow_abs(v.abs(), p)).sum(), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_vectors_have_zero_residual() {
        let x = [0.5f32, -1.25, 3.0];
        let s = soart3(&x, &x, Orders::DEFAULT);
        assert!((s.beta - 1.0).abs() < 1e-12);
        assert!(s.eta.abs() < 1e-12);
        assert!(s.gamma.abs() < 1e-12);
    }

    #[test]
    fn scaled_reference_is_projected_out() {
        // y = 2x: beta absorbs the scale (up to the regulariser), the residual is tiny.
        let x = [1.0f32, 2.0, -3.0, 0.5];
        let y: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
        let s = soart3(&x, &y, Orders::DEFAULT);
        assert!((s.beta - 2.0).abs() < 1e-5, "{s:?}");
        assert!(s.eta < 1e-4, "{s:?}");
    }

    #[test]
    fn orthogonal_vectors_keep_the_whole_frame() {
        let x = [1.0f32, 0.0];
        let y = [0.0f32, 3.0];
        let s = soart3(&x, &y, Orders::DEFAULT);
        assert!((s.beta - 0.0001 / 1.0001).abs() < 1e-15);
        // r = (-beta, 3): eta = ln(1 + sqrt(beta^2 + 9))
        let b = s.beta;
        assert!((s.eta - (1.0 + (b * b + 9.0).sqrt()).ln()).abs() < 1e-15);
        let n6 = (b.powi(6) + 3f64.powi(6)).powf(1.0 / 6.0);
        assert!((s.gamma - (s.eta - (1.0 + n6).ln())).abs() < 1e-15);
    }

    #[test]
    fn minkowski_matches_definition() {
        let r = [3.0, -4.0];
        assert_eq!(minkowski_norm(&r, 2.0), 5.0);
        assert_eq!(minkowski_norm(&r, 1.0), 7.0);
        assert!((minkowski_norm(&r, 3.0) - (27.0f64 + 64.0).cbrt()).abs() < 1e-12);
    }
}
