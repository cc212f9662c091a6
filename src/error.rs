//! An error and its causes as one line, for places that carry a reason as text (a verdict's
//! `error`, a status event's `reason`, a log field). `main` prints the same chain over several
//! lines.

/// `error: cause: cause…`, each message trimmed (some libraries end theirs with a newline).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string().trim().to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(c.to_string().trim());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot load model m.onnx")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_on_the_line() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(super::chain(&e), "cannot load model m.onnx: disk on fire");
        let e = Outer(std::io::Error::other("not enough bytes\n"));
        assert_eq!(
            super::chain(&e),
            "cannot load model m.onnx: not enough bytes"
        );
    }
}
