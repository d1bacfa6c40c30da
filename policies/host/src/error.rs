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

impl PolicyError {
    /// The same failure, said of instantiating the module (its start function runs then,
    /// within the deadline of the call it was made for).
    pub(crate) fn during_instantiation(self) -> Self {
        let start = |function| match function {
            "evaluate" => "instantiating the module for evaluate",
            "classify" => "instantiating the module for classify",
            _ => "instantiating the module",
        };
        match self {
            PolicyError::Timeout { function, ms } => PolicyError::Timeout {
                function: start(function),
                ms,
            },
            PolicyError::Trap { function, reason } => PolicyError::Trap {
                function: start(function),
                reason,
            },
            other => other,
        }
    }
}

/// Text that came from a module (its answer, its names, what wasmtime says of it), made safe
/// for logs, terminals and API messages: control characters — newlines that would forge a
/// log line, terminal escapes — are escaped (`\n`, `\u{1b}`), and the whole is truncated
/// to keep errors readable.
pub(crate) fn guest_text(s: impl AsRef<str>) -> String {
    let mut out = String::new();
    for c in s.as_ref().chars() {
        if out.len() >= 512 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::guest_text;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        let t = guest_text("no\n2026-12-01 INFO forged\x1b[2J\u{7}");
        assert_eq!(t, "no\\n2026-12-01 INFO forged\\u{1b}[2J\\u{7}");
        assert!(!t.chars().any(char::is_control));
        let long = guest_text("é".repeat(1000));
        assert!(
            long.len() <= 512 + 'é'.len_utf8() + '…'.len_utf8(),
            "{}",
            long.len()
        );
        assert!(long.ends_with('…'));
    }
}
