//! The command language: parser, script parser, completer, hinter and highlighter
//! (`host/session/src/lang`).
//!
//! Input: one line or a script, as UTF-8. scripts/fuzz.sh runs this target with a short
//! `-timeout` and a 4 KiB `-max_len`, so quadratic behaviour shows up as a timeout.
//!
//! Properties: every span and completion start lies inside the input and on a char boundary;
//! highlight spans are ordered and disjoint; a parsed command's canonical text parses back to the
//! same command; error rendering never panics.

use crate::lang::{self, NoSource};
use crate::on_boundary;

fn check_span(input: &str, span: &std::ops::Range<usize>, what: &str) {
    assert!(span.start <= span.end, "{what}: reversed span {span:?}");
    assert!(
        on_boundary(input, span.start) && on_boundary(input, span.end),
        "{what}: span {span:?} is outside {} bytes or splits a character",
        input.len()
    );
}

pub fn run(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    match lang::parse(input) {
        Ok(command) => {
            let text = command.to_string();
            let again = lang::parse(&text)
                .unwrap_or_else(|e| panic!("canonical text {text:?} of {input:?} fails: {e}"));
            assert_eq!(
                again, command,
                "canonical text {text:?} parses to another command"
            );
            assert_eq!(again.to_string(), text);
        }
        Err(error) => {
            check_span(input, &error.span, "parse error");
            let _ = error.render(input);
            let _ = error.full_message();
        }
    }

    match lang::parse_script(input) {
        Ok(statements) => {
            let mut end = 0;
            for statement in &statements {
                check_span(input, &statement.span, "statement");
                assert!(statement.span.start >= end, "statements overlap");
                end = statement.span.end;
            }
        }
        Err(error) => {
            check_span(input, &error.span, "script error");
            let _ = error.render(input);
        }
    }

    let mut end = 0;
    for (span, _) in lang::highlight(input) {
        check_span(input, &span, "highlight");
        assert!(span.start >= end, "highlight spans overlap or go backwards");
        end = span.end;
    }

    let _ = lang::hint(input);
    let _ = lang::is_complete(input);

    // Completion at the end and at a few cursor positions inside.
    let boundaries: Vec<usize> = (0..=input.len())
        .filter(|&i| input.is_char_boundary(i))
        .collect();
    let step = (boundaries.len() / 8).max(1);
    for &cursor in boundaries.iter().step_by(step).chain(boundaries.last()) {
        let completion = lang::complete(input, cursor, &NoSource);
        assert!(
            completion.start <= cursor,
            "completion starts after the cursor"
        );
        assert!(
            on_boundary(input, completion.start),
            "completion start splits a character"
        );
    }
}
