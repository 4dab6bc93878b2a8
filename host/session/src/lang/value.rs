//! Checking one argument or option value against its [`ValueKind`].

use std::ops::Range;
use std::path::PathBuf;

use super::ast::ModelRef;
use super::spec::ValueKind;
use super::suggest::closest;
use super::table::{command_names, find_command};

/// A checked value, before the parser moves it into a command's typed field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Flag,
    Text(String),
    Int(u64),
    Float(f32),
    Ids(Vec<u32>),
    Choice(&'static str),
    Path(PathBuf),
    Model(ModelRef),
}

/// Why a value was refused; the parser words it for the argument or option at fault.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// The wrong type: what was expected, in words ("an integer").
    Expected(String),
    /// The right type out of range: the range, in words ("at least 1").
    OutOfRange(String),
    /// Not one of the allowed words; maybe a close one.
    NotOneOf(&'static [&'static str], Option<&'static str>),
    Empty,
    /// One item of a comma list is bad: its byte range within the value's text.
    ListItem(Range<usize>, Box<Problem>),
    UnknownCommand(Option<&'static str>),
}

/// Checks `text` (a bare word as written, or a string's value when `quoted`) against `kind`.
pub(crate) fn check(kind: &ValueKind, text: &str, quoted: bool) -> Result<Value, Problem> {
    match *kind {
        ValueKind::Flag => Ok(Value::Flag),
        ValueKind::Text | ValueKind::Code => Ok(Value::Text(text.to_string())),
        ValueKind::Name | ValueKind::Tensor | ValueKind::Plugin(_) => {
            non_empty(text).map(|t| Value::Text(t.to_string()))
        }
        ValueKind::Int { min, max } => int(text, min, max).map(Value::Int),
        ValueKind::Step => int(text, 0, u64::MAX).map(Value::Int),
        ValueKind::Float {
            min,
            min_inclusive,
            max,
            max_inclusive,
        } => float(kind, text, min, min_inclusive, max, max_inclusive).map(Value::Float),
        ValueKind::TokenIds => ids(text).map(Value::Ids),
        ValueKind::Choice(names) => match names.iter().find(|n| **n == text) {
            Some(name) => Ok(Value::Choice(name)),
            None => Err(Problem::NotOneOf(
                names,
                closest(text, names.iter().copied()),
            )),
        },
        ValueKind::Path | ValueKind::Dir => non_empty(text).map(|t| Value::Path(PathBuf::from(t))),
        ValueKind::Model => {
            // Only the bare word is the keyword, so `"default"` can still name a directory.
            if text == "default" && !quoted {
                Ok(Value::Model(ModelRef::Default))
            } else {
                non_empty(text).map(|t| Value::Model(ModelRef::Path(PathBuf::from(t))))
            }
        }
        ValueKind::Command => match find_command(text) {
            Some(spec) => Ok(Value::Text(spec.name.to_string())),
            None => Err(Problem::UnknownCommand(closest(text, command_names()))),
        },
    }
}

fn non_empty(text: &str) -> Result<&str, Problem> {
    if text.is_empty() {
        Err(Problem::Empty)
    } else {
        Ok(text)
    }
}

/// `-?[0-9]+`
pub(crate) fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `-?(D+(.D*)?|.D+)([eE][+-]?D+)?` with `D` a digit: what the lexer's users call a number.
/// Stricter than `str::parse::<f32>`, which also takes `inf`, `NaN` and `+1`.
pub(crate) fn is_number(text: &str) -> bool {
    let rest = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole)
        && fraction.is_none_or(digits)
        && (!whole.is_empty() || fraction.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

fn int(text: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let range = || ValueKind::Int { min, max }.range_text();
    if !is_integer(text) {
        return Err(Problem::Expected("an integer".into()));
    }
    match text.strip_prefix('-') {
        // `-0` is zero; any other negative number is below every minimum.
        Some(digits) if digits.bytes().any(|b| b != b'0') => Err(Problem::OutOfRange(range())),
        Some(_) if min > 0 => Err(Problem::OutOfRange(range())),
        Some(_) => Ok(0),
        None => match text.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(Problem::OutOfRange(range())),
        },
    }
}

fn float(
    kind: &ValueKind,
    text: &str,
    min: f32,
    min_inclusive: bool,
    max: f32,
    max_inclusive: bool,
) -> Result<f32, Problem> {
    if !is_number(text) {
        return Err(Problem::Expected("a number".into()));
    }
    let value: f32 = text
        .parse()
        .map_err(|_| Problem::Expected("a number".into()))?;
    let above = if min_inclusive {
        value >= min
    } else {
        value > min
    };
    let below = if max_inclusive {
        value <= max
    } else {
        value < max
    };
    if value.is_finite() && above && below {
        Ok(value)
    } else {
        Err(Problem::OutOfRange(kind.range_text()))
    }
}

fn ids(text: &str) -> Result<Vec<u32>, Problem> {
    let mut out = Vec::new();
    let mut start = 0;
    for item in text.split(',') {
        let range = start..start + item.len();
        start = range.end + 1;
        let problem = if item.is_empty() {
            Problem::Expected("a token id".into())
        } else if !is_integer(item) {
            Problem::Expected("a token id (an integer)".into())
        } else {
            match item.parse::<u32>() {
                Ok(id) => {
                    out.push(id);
                    continue;
                }
                Err(_) => Problem::OutOfRange(format!("from 0 to {}", u32::MAX)),
            }
        };
        return Err(Problem::ListItem(range, Box::new(problem)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in ["0", "12", "-3", "1.5", "-.5", "5.", "1e-3", "2E+10", "0.8"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in [
            "", "-", ".", "e5", "1e", "1.2.3", "inf", "NaN", "+1", "1_000", "0x10", "1,2",
        ] {
            assert!(!is_number(bad), "{bad}");
        }
    }

    #[test]
    fn integers_and_ranges() {
        assert_eq!(int("42", 1, u64::MAX), Ok(42));
        assert_eq!(int("-0", 0, 5), Ok(0));
        assert!(matches!(int("-0", 1, 5), Err(Problem::OutOfRange(_))));
        assert!(matches!(int("-7", 0, 5), Err(Problem::OutOfRange(_))));
        assert!(matches!(int("6", 0, 5), Err(Problem::OutOfRange(_))));
        assert!(matches!(
            int("99999999999999999999999", 0, u64::MAX),
            Err(Problem::OutOfRange(_))
        ));
        assert!(matches!(int("ten", 0, 5), Err(Problem::Expected(_))));
        assert!(matches!(int("1.0", 0, 5), Err(Problem::Expected(_))));
    }

    #[test]
    fn floats_respect_open_and_closed_ends() {
        let p = ValueKind::Float {
            min: 0.0,
            min_inclusive: false,
            max: 1.0,
            max_inclusive: true,
        };
        assert_eq!(check(&p, "1", false), Ok(Value::Float(1.0)));
        assert_eq!(check(&p, "1e-3", false), Ok(Value::Float(0.001)));
        assert!(matches!(check(&p, "0", false), Err(Problem::OutOfRange(_))));
        assert!(matches!(
            check(&p, "1.5", false),
            Err(Problem::OutOfRange(_))
        ));
        assert!(matches!(check(&p, "inf", false), Err(Problem::Expected(_))));
        let any = ValueKind::Float {
            min: 0.0,
            min_inclusive: true,
            max: f32::INFINITY,
            max_inclusive: false,
        };
        assert!(matches!(
            check(&any, "1e99", false),
            Err(Problem::OutOfRange(_))
        ));
    }

    #[test]
    fn token_id_lists_point_at_the_bad_item() {
        assert_eq!(ids("1,17,300"), Ok(vec![1, 17, 300]));
        assert!(matches!(ids("1,,3"), Err(Problem::ListItem(r, _)) if r == (2..2)));
        assert!(matches!(ids("1,x"), Err(Problem::ListItem(r, _)) if r == (2..3)));
        assert!(matches!(ids("1,4294967296"), Err(Problem::ListItem(r, _)) if r == (2..12)));
    }

    #[test]
    fn model_keyword_only_when_bare() {
        assert_eq!(
            check(&ValueKind::Model, "default", false),
            Ok(Value::Model(ModelRef::Default))
        );
        assert_eq!(
            check(&ValueKind::Model, "default", true),
            Ok(Value::Model(ModelRef::Path("default".into())))
        );
    }

    #[test]
    fn choices_suggest() {
        let kind = ValueKind::Choice(&["tiny", "small"]);
        assert_eq!(
            check(&kind, "smal", false),
            Err(Problem::NotOneOf(&["tiny", "small"], Some("small")))
        );
    }
}
