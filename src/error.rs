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
