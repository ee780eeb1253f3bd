//! What the launcher (mpirun, srun) tells a process through its environment, readable
//! before MPI starts: a bad command line is found before `MPI_Init`, when the
//! communicator cannot yet say which rank should report it.

/// Rank of this process as its launcher numbered it (0 when not launched as a rank).
pub fn rank() -> usize {
    first_number(&["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"]).unwrap_or(0)
}

/// Number of ranks the launcher started (1 when not launched as a rank). Slurm's
/// SLURM_NTASKS is also set in a batch script outside `srun`; MPI then starts a single rank,
/// so trusting it costs only an `MPI_Init`.
pub fn size() -> usize {
    first_number(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"]).unwrap_or(1).max(1)
}

/// Whether this process prints an error found before MPI starts. Every rank has the same
/// command line, so rank 0 speaks for all; with Open MPI's MPMD launch (`mpirun -n 1 a :
/// -n 1 b`) the first rank of each application context has its own command line and speaks too.
pub fn reports_early_errors() -> bool {
    let me = rank();
    let firsts = std::env::var("OMPI_FIRST_RANKS").unwrap_or_default();
    me == 0 || firsts.split([' ', ',']).any(|r| r.parse() == Ok(me))
}

fn first_number(vars: &[&str]) -> Option<usize> {
    vars.iter().find_map(|v| std::env::var(v).ok()).and_then(|s| s.trim().parse().ok())
}
