//! Fenced code blocks as CommonMark defines them, reduced to what a line scanner needs.
//!
//! Every fence in a workbook is recognised, not only tritlab's: a ```` ```tritlab ```` line inside
//! a prose example fenced with `~~~` is example text, not a cell, exactly as a Markdown viewer
//! shows it.

/// An opening fence: `indent` spaces (0 to 3), then `len` (≥ 3) copies of `ch` (`` ` `` or `~`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub ch: char,
    pub len: usize,
    pub indent: usize,
}

/// Splits `line` into an opening fence and its info string (trimmed), if it opens one.
pub(crate) fn open(line: &str) -> Option<(Fence, &str)> {
    let rest = line.trim_start_matches(' ');
    let indent = line.len() - rest.len();
    if indent > 3 {
        return None;
    }
    let ch = rest.chars().next().filter(|&c| c == '`' || c == '~')?;
    let after = rest.trim_start_matches(ch);
    let len = rest.len() - after.len();
    let info = after.trim_matches([' ', '\t']);
    // A backtick fence's info string may not hold a backtick: such a line is inline code.
    if len < 3 || (ch == '`' && info.contains('`')) {
        return None;
    }
    Some((Fence { ch, len, indent }, info))
}

impl Fence {
    /// Whether `line` closes a block this fence opened: up to 3 spaces, at least as many of the
    /// same character, then only spaces or tabs.
    pub fn is_closed_by(&self, line: &str) -> bool {
        let rest = line.trim_start_matches(' ');
        if line.len() - rest.len() > 3 {
            return false;
        }
        let after = rest.trim_start_matches(self.ch);
        rest.len() - after.len() >= self.len && after.bytes().all(|b| b == b' ' || b == b'\t')
    }

    /// The fence as written, for messages.
    pub fn marker(&self) -> String {
        std::iter::repeat_n(self.ch, self.len).collect()
    }
}

/// The shortest backtick fence (at least three) that no line of `body` can close.
pub(crate) fn backticks_for(body: &str) -> String {
    let longest_run = body
        .split('\n')
        .filter_map(|line| {
            let rest = line.trim_start_matches(' ');
            (line.len() - rest.len() <= 3).then(|| rest.len() - rest.trim_start_matches('`').len())
        })
        .max()
        .unwrap_or(0);
    "`".repeat(longest_run.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_backtick_and_tilde_fences() {
        assert_eq!(
            open("```tritlab id=a"),
            Some((
                Fence {
                    ch: '`',
                    len: 3,
                    indent: 0
                },
                "tritlab id=a"
            ))
        );
        assert_eq!(
            open("  ~~~~ rust  "),
            Some((
                Fence {
                    ch: '~',
                    len: 4,
                    indent: 2
                },
                "rust"
            ))
        );
        assert_eq!(open("``"), None);
        assert_eq!(
            open("    ```"),
            None,
            "four spaces make an indented code block"
        );
        assert_eq!(open("```a`b"), None, "backticks in the info string");
        assert_eq!(open("~~~a`b").map(|(_, info)| info), Some("a`b"));
    }

    #[test]
    fn closes_only_with_a_long_enough_fence_of_the_same_char() {
        let (fence, _) = open("````").unwrap();
        assert!(fence.is_closed_by("````"));
        assert!(fence.is_closed_by("   `````  "));
        assert!(!fence.is_closed_by("```"));
        assert!(!fence.is_closed_by("~~~~"));
        assert!(!fence.is_closed_by("````x"));
        assert!(!fence.is_closed_by("    ````"));
    }

    #[test]
    fn backticks_for_outgrows_the_body() {
        assert_eq!(backticks_for("plain"), "```");
        assert_eq!(backticks_for("a\n```\nb"), "````");
        assert_eq!(backticks_for("  `````x"), "``````");
        assert_eq!(
            backticks_for("    ``````"),
            "```",
            "indented four: cannot close"
        );
    }
}
