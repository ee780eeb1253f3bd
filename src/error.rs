//! Bad input: the error kind every layer can raise and `cli` reports (one line, exit code 2).
//! It sits at the bottom so that no module has to import `cli` to raise it.

/// Errors found before any work: the same on every rank, printed once, exit code 2.
#[derive(Debug)]
pub struct InputError(pub anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}
impl std::error::Error for InputError {}

/// Wraps a validation error so `main` reports it as bad input.
pub fn input_err(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(InputError(e))
}

/// Exit code of a `sample` run stopped by SIGTERM/SIGUSR1: neither success (the ensemble is
/// shorter than asked, or absent) nor an error (what was written is valid). A Slurm chain
/// with `afterok` therefore stops there instead of analysing a partial ensemble as complete.
pub const EXIT_STOPPED: i32 = 3;

/// A run stopped by a signal before it made all it was asked for: the same on every rank
/// (they stop together), printed once by rank 0, exit code [`EXIT_STOPPED`].
#[derive(Debug)]
pub struct StoppedBySignal(pub String);

impl std::fmt::Display for StoppedBySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StoppedBySignal {}
