//! What tritlab and the Rust cell runner say to each other: one JSON object per line, on the
//! runner's stdin and stdout.
//!
//! Replies carry a [`MARK`] at the start of the line, so that anything else that reaches the
//! runner's stdout (a crate's stray `println!`) cannot be taken for one.

use serde::{Deserialize, Serialize};

/// Starts every reply line.
pub const MARK: &str = "\u{1e}tritlab-rust-cells ";

/// From tritlab to the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Run a cell. One cell runs at a time; the next request waits for its reply.
    Eval { code: String },
    /// Stop the running cell (its reply says `cancelled`).
    Cancel,
}

/// From the runner to tritlab, one per [`Request::Eval`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// What the cell printed and its value.
    Ok { text: String },
    /// Why the cell failed: a compile error, a panic, `cancelled`.
    Err { text: String },
}

impl Reply {
    /// The reply as a line for the runner's stdout, [`MARK`] first.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("a reply is plain data");
        format!("{MARK}{json}")
    }

    /// The reply in a line of the runner's stdout, if the line is one.
    pub fn from_line(line: &str) -> Option<Reply> {
        serde_json::from_str(line.strip_prefix(MARK)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_other_lines_are_not_replies() {
        for reply in [
            Reply::Ok {
                text: "2\nline with \u{1e} and \"quotes\"".into(),
            },
            Reply::Err {
                text: "error[E0308]".into(),
            },
        ] {
            assert_eq!(Reply::from_line(&reply.to_line()), Some(reply));
        }
        assert_eq!(Reply::from_line("{\"ok\":{\"text\":\"x\"}}"), None);
        assert_eq!(Reply::from_line(&format!("{MARK}not json")), None);
    }

    #[test]
    fn requests_are_one_line_of_json() {
        let line = serde_json::to_string(&Request::Eval {
            code: "let a = 1;\nprintln!(\"{a}\");".into(),
        })
        .unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Request>(&line).unwrap(),
            Request::Eval {
                code: "let a = 1;\nprintln!(\"{a}\");".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Cancel).unwrap(),
            "\"cancel\""
        );
    }
}
