//! A full file system (or an exceeded quota) as one line.
//!
//! HDF5 reports a failed write as a multi-line text (time stamp, descriptor, buffer address,
//! "bytes actually written = 18446744073709551615"); what a user needs from it is that the
//! disk is full and which file was being written. Other errors are only joined onto one line.

/// The error on one line: a full disk or quota named as such with the file being written,
/// anything else with its line breaks replaced.
pub fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let Some(what) = no_space(e, &text) else {
        return flatten(&text);
    };
    // The contexts above the failed write say what was being written; the write's own
    // text is replaced by the named file.
    let contexts: Vec<String> =
        e.chain().map(|c| flatten(&c.to_string())).filter(|c| no_space_text(c).is_none()).collect();
    let head = match written_file(&text) {
        Some(f) => format!("{what} writing '{f}'"),
        None => what.to_string(),
    };
    contexts.into_iter().chain([head, "free space there or write elsewhere".into()]).collect::<Vec<_>>().join(": ")
}

/// "no space left on device" or "disk quota exceeded" when the error is one of those
/// (an `io::Error` in the chain, or HDF5's text naming the errno).
fn no_space(e: &anyhow::Error, text: &str) -> Option<&'static str> {
    let code = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>().and_then(|io| io.raw_os_error()));
    match code {
        Some(libc::ENOSPC) => Some(NO_SPACE),
        Some(libc::EDQUOT) => Some(QUOTA),
        _ => no_space_text(text),
    }
}

const NO_SPACE: &str = "no space left on device";
const QUOTA: &str = "disk quota exceeded";

/// The same, read from a message's text (HDF5's `errno = 28,`, Rust's `(os error 28)`).
fn no_space_text(text: &str) -> Option<&'static str> {
    let errno = |n: i32| text.contains(&format!("errno = {n},")) || text.contains(&format!("(os error {n})"));
    if errno(libc::ENOSPC) {
        Some(NO_SPACE)
    } else if errno(libc::EDQUOT) {
        Some(QUOTA)
    } else {
        None
    }
}

/// HDF5's `filename = '...'`: the file whose write failed.
fn written_file(text: &str) -> Option<&str> {
    let start = text.find("filename = '")? + "filename = '".len();
    let len = text[start..].find('\'')?;
    Some(&text[start..start + len])
}

fn flatten(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDF5_ENOSPC: &str = "H5Fflush(): unable to flush file's cached information: file write failed: time = Wed Dec  2 13:52:28 2026\n, filename = '/tmp/full/.e.h5.partial', file descriptor = 20, errno = 28, error message = 'No space left on device', buf = 0x55a10da843c1, total write size = 19079";

    #[test]
    fn hdf5_disk_full_names_the_file_on_one_line() {
        let e = anyhow::anyhow!(HDF5_ENOSPC).context("round 3");
        let line = one_line(&e);
        assert_eq!(
            line,
            "round 3: no space left on device writing '/tmp/full/.e.h5.partial': free space there or write elsewhere"
        );
    }

    #[test]
    fn io_errors_are_recognised_through_context() {
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EDQUOT))
            .context("out: writing the lock file 'x'");
        assert_eq!(
            one_line(&e),
            "out: writing the lock file 'x': disk quota exceeded: free space there or write elsewhere"
        );
    }

    #[test]
    fn other_errors_are_joined_onto_one_line() {
        assert_eq!(one_line(&anyhow::anyhow!("a\n, b\n\nc")), "a , b c");
    }
}
