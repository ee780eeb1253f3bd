//! Factor-2 decimation of a periodic lattice, the blocking of the multilevel sampler.
//!
//! The coarse lattice L_t × L_x sits on the fine 2L_t × 2L_x as its sites with both
//! coordinates even: coarse site (T, X) is fine site (2T, 2X), with the field value kept
//! as it is (decimation, not a block average). Why decimation: the coarse field is then a
//! subset of the fine degrees of freedom, so refining is "draw the other three quarters"
//! and the proposal density is a plain conditional density, with no Jacobian and no
//! constraint surface. The other fine sites fall into two classes:
//! - centres (t, x both odd): no coarse nearest neighbour, four coarse diagonal ones;
//! - edges (t + x odd): every nearest neighbour is a coarse site or a centre, so given
//!   coarse sites and centres the edges are conditionally independent under any
//!   nearest-neighbour action.

use super::Lattice;

/// Where a fine site sits relative to the coarse lattice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteClass {
    /// Both coordinates even: a coarse site.
    Coarse,
    /// Both odd: drawn from the four coarse diagonal neighbours.
    Centre,
    /// One odd: drawn from its four nearest neighbours (coarse sites and centres).
    Edge,
}

pub fn class(t: usize, x: usize) -> SiteClass {
    match (t % 2, x % 2) {
        (0, 0) => SiteClass::Coarse,
        (1, 1) => SiteClass::Centre,
        _ => SiteClass::Edge,
    }
}

/// The fine lattice a coarse one refines to.
pub fn refined(coarse: Lattice) -> Lattice {
    Lattice::new(2 * coarse.lt, 2 * coarse.lx)
}

/// Whether `fine` refines some lattice (both extents even and at least 4).
pub fn refinable(fine: Lattice) -> bool {
    fine.lt % 2 == 0 && fine.lx % 2 == 0 && fine.lt >= 4 && fine.lx >= 4
}

/// The coarse lattice whose refinement is `fine` (both extents even).
pub fn coarsened(fine: Lattice) -> Lattice {
    debug_assert!(fine.lt % 2 == 0 && fine.lx % 2 == 0);
    Lattice::new(fine.lt / 2, fine.lx / 2)
}

/// coarse(T, X) = fine(2T, 2X).
pub fn decimate(fine_lat: Lattice, fine: &[f64], coarse: &mut [f64]) {
    let c = coarsened(fine_lat);
    for t in 0..c.lt {
        for x in 0..c.lx {
            coarse[c.site(t, x)] = fine[fine_lat.site(2 * t, 2 * x)];
        }
    }
}

/// fine(2T, 2X) = coarse(T, X); the other sites untouched.
pub fn embed(fine_lat: Lattice, coarse: &[f64], fine: &mut [f64]) {
    let c = coarsened(fine_lat);
    for t in 0..c.lt {
        for x in 0..c.lx {
            fine[fine_lat.site(2 * t, 2 * x)] = coarse[c.site(t, x)];
        }
    }
}

/// The four sites a non-coarse site is drawn from: a centre's diagonal neighbours, an
/// edge's nearest neighbours (periodic).
pub fn parents(lat: Lattice, t: usize, x: usize) -> [usize; 4] {
    let (lt, lx) = (lat.lt, lat.lx);
    let (tp, tm) = ((t + 1) % lt, (t + lt - 1) % lt);
    let (xp, xm) = ((x + 1) % lx, (x + lx - 1) % lx);
    match class(t, x) {
        SiteClass::Centre => [lat.site(tp, xp), lat.site(tp, xm), lat.site(tm, xp), lat.site(tm, xm)],
        _ => [lat.site(tp, x), lat.site(tm, x), lat.site(t, xp), lat.site(t, xm)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimate_inverts_embed_and_parents_are_drawn_before_their_children() {
        let fine = Lattice::new(8, 12);
        let coarse: Vec<f64> = (0..coarsened(fine).volume()).map(|i| i as f64 + 0.5).collect();
        let mut f = vec![f64::NAN; fine.volume()];
        embed(fine, &coarse, &mut f);
        let mut back = vec![0.0; coarse.len()];
        decimate(fine, &f, &mut back);
        assert_eq!(back, coarse);
        // Centres draw only on coarse sites; edges only on coarse sites and centres.
        for t in 0..fine.lt {
            for x in 0..fine.lx {
                let allowed: &[SiteClass] = match class(t, x) {
                    SiteClass::Coarse => continue,
                    SiteClass::Centre => &[SiteClass::Coarse],
                    SiteClass::Edge => &[SiteClass::Coarse, SiteClass::Centre],
                };
                for p in parents(fine, t, x) {
                    assert!(allowed.contains(&class(p / fine.lx, p % fine.lx)), "({t}, {x}) <- {p}");
                }
            }
        }
    }
}
