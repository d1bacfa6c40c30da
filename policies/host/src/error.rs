/// Why a policy could not be loaded or run. Messages are for the policy's author: they name the
/// import, the export, the limit or the field that is wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Not a component wasmnet can run (bad bytes, wrong interface or version, imports).
    #[error("{0}")]
    Invalid(String),
    /// The call ran past its time limit.
    #[error("{function} exceeded its time limit of {ms} ms")]
    Timeout { function: &'static str, ms: u64 },
    /// The guest trapped (a panic, stack overflow, memory limit, ...).
    #[error("{function} trapped: {reason}")]
    Trap {
        function: &'static str,
        reason: String,
    },
    /// The guest answered with an error of its own.
    #[error("{function} returned an error: {message}")]
    Refused {
        function: &'static str,
        message: String,
    },
    /// The answer breaks the contract or the output limits.
    #[error("{function} returned a bad decision: {reason}")]
    BadOutput {
        function: &'static str,
        reason: String,
    },
}

/// A message from the guest, truncated to keep errors readable.
pub(crate) fn truncate(mut s: String) -> String {
    if s.len() > 512 {
        let cut = (0..=512)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}
