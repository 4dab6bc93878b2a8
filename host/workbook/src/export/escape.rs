//! Escaping for the text formats the exporters write.

/// Text safe inside HTML or XML element content and quoted attribute values.
pub(crate) fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text that Markdown shows literally within one line, e.g. in a table cell or a bold title.
///
/// Escapes only what can start inline markup (CommonMark allows a backslash before any ASCII
/// punctuation, but a cell reading `\-1` is ugly in the source): `\ ` * [ ] < > | ~ &`, and `_`
/// except inside a word, where it never means emphasis. Line breaks become `<br>`.
pub(crate) fn markdown_inline(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let intraword = || {
            i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|next| next.is_alphanumeric())
        };
        match c {
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '_' if !intraword() => out.push_str("\\_"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn markdown_inline_escapes_punctuation_and_breaks() {
        assert_eq!(
            markdown_inline("a|b *c*\nd<e>"),
            "a\\|b \\*c\\*<br>d\\<e\\>"
        );
        assert_eq!(
            markdown_inline("q_proj _x_ -1 +1 #2"),
            "q_proj \\_x\\_ -1 +1 #2"
        );
        assert_eq!(markdown_inline("&amp; `c` ~s~"), "\\&amp; \\`c\\` \\~s\\~");
    }
}
