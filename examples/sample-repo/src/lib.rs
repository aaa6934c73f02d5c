//! Small text statistics.

/// Counts the words in `text`.
pub fn word_count(text: &str) -> usize {
    text.split(' ').count()
}

/// Counts the lines in `text`.
pub fn line_count(text: &str) -> usize {
    text.lines().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_separated_by_single_spaces() {
        assert_eq!(word_count("the quick brown fox"), 4);
    }

    #[test]
    fn ignores_runs_of_whitespace() {
        assert_eq!(word_count("  the  quick\tbrown\nfox "), 4);
    }

    #[test]
    fn counts_lines() {
        assert_eq!(line_count("a\nb\n"), 2);
    }
}
