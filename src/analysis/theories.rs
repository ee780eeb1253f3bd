//! Which observables measure which theory: the one place analysis matches on the theory.

use super::{Observables, Phi4Observables, Su2Observables, U1Observables};
use crate::lattice::Lattice;
use crate::theory::Couplings;

/// The observables of the theory with these couplings on `lattice`.
pub fn observables_for(couplings: Couplings, lattice: Lattice) -> Box<dyn Observables> {
    match couplings {
        Couplings::Phi4(p) => Box::new(Phi4Observables::new(lattice, p)),
        Couplings::U1 { beta } => Box::new(U1Observables::new(lattice, beta)),
        Couplings::Su2 { beta } => Box::new(Su2Observables::new(lattice, beta)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Primaries;
    use crate::theory::{u1_exact, Parametrisation, Phi4, Theory, U1};

    /// Each theory's observables read configurations of its theory's shape and name the
    /// theory as its files do.
    #[test]
    fn observables_match_their_theory() {
        let lat = Lattice::new(8, 6);
        let p = Parametrisation::Hopping { kappa: 0.2, lambda: 0.01 };
        let dofs = |shape: Vec<usize>| shape.iter().product::<usize>();
        let phi4 = observables_for(Couplings::Phi4(p), lat);
        assert_eq!(phi4.values_per_site(), 1);
        assert_eq!(phi4.volume(), dofs(Phi4::new(lat, p).dof_shape(lat)));
        assert_eq!(phi4.theory_attrs(), Phi4::new(lat, p).attrs());
        let u1 = observables_for(Couplings::U1 { beta: 2.0 }, lat);
        assert_eq!(u1.values_per_site(), 2);
        assert_eq!(u1.volume(), dofs(U1::new(lat, 2.0).dof_shape(lat)));
        assert_eq!(u1.theory_attrs(), U1::new(lat, 2.0).attrs());
    }

    /// U(1) has a topology (integer charges, how often they changed within a chain, the
    /// exact values on this torus); φ⁴ has none.
    #[test]
    fn u1_has_a_topology_and_phi4_none() {
        let lat = Lattice::new(8, 8);
        let u1 = observables_for(Couplings::U1 { beta: 2.0 }, lat);
        let prim = Primaries { names: vec!["q".into()], columns: vec![vec![0.0, 1.0, 1.0 + 1e-9, 1.0]] };
        let t = u1.topology(&prim, Some(&[0, 0, 1, 1])).unwrap().expect("U(1) has a topology");
        assert_eq!(t.q, vec![0, 1, 1, 1]);
        assert_eq!(t.chain, vec![0, 0, 1, 1]);
        // Chain 0 changed once (0 → 1), chain 1 never.
        assert_eq!(t.changed_fraction, 0.5);
        assert_eq!(t.exact[0].0, "plaquette");
        assert!((t.exact[0].1 - 0.697775).abs() < 1e-6, "{}", t.exact[0].1);
        assert_eq!(t.exact[1], ("chi_t", u1_exact::topological_susceptibility(2.0, 64)));
        assert_eq!(t.exact_p_q.len(), 13);
        assert_eq!(t.exact_p_q[6].0, 0);
        assert!((t.exact_p_q[6].1 - 0.359).abs() < 5e-4 && t.exact_p_q[5].1 == t.exact_p_q[7].1);
        let broken = Primaries { names: vec!["q".into()], columns: vec![vec![0.0, 0.5]] };
        assert!(u1.topology(&broken, None).unwrap_err().contains("configuration 1"));

        let phi4 = observables_for(Couplings::Phi4(Parametrisation::Hopping { kappa: 0.2, lambda: 0.0 }), lat);
        assert!(phi4.topology(&prim, None).unwrap().is_none());
    }
}
