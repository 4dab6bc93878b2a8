//! "Did you mean …?" suggestions for misspelt names.

/// Edit distance between `a` and `b` counting insertions, deletions, substitutions and swaps of
/// adjacent characters (the optimal-string-alignment form of Damerau–Levenshtein). Swaps matter
/// because they are the commonest typing slip (`gnereate`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows: the one before the previous is needed for swaps.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// How many edits a word of `len` characters may be off and still get a suggestion: short words
/// allow one slip, longer ones more, so `sed` does not suggest `seek` but `generte` suggests
/// `generate`.
fn threshold(len: usize) -> usize {
    match len {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    }
}

/// The candidate `word` was most likely meant to be, if any is close enough: a case-insensitive
/// match first, then the nearest by [`edit_distance`] within the length threshold (ties go to the
/// earlier candidate), then the one candidate `word` is a prefix of.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if word.is_empty() {
        return None;
    }
    let lower = word.to_lowercase();
    if let Some(same) = candidates.iter().find(|c| c.to_lowercase() == lower) {
        return Some(same);
    }
    let limit = threshold(word.chars().count());
    let nearest = candidates
        .iter()
        .map(|c| (edit_distance(&lower, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    if let Some((_, c)) = nearest {
        return Some(c);
    }
    let mut prefixed = candidates
        .iter()
        .filter(|c| word.chars().count() >= 2 && c.starts_with(&lower));
    match (prefixed.next(), prefixed.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("generte", "generate"), 1);
        assert_eq!(edit_distance("gnereate", "generate"), 2);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let commands = ["generate", "logits", "seek", "step", "back"];
        assert_eq!(closest("generte", commands), Some("generate"));
        assert_eq!(closest("GENERATE", commands), Some("generate"));
        assert_eq!(closest("sek", commands), Some("seek"));
        assert_eq!(closest("gen", commands), Some("generate"));
        assert_eq!(closest("zzzzzz", commands), None);
        assert_eq!(closest("", commands), None);
    }
}
