//! tinyfmt 2: tiny text-alignment helpers.
//!
//! 2.0 renamed `pad` to [`pad_left`], which says which side the spaces go on, and added
//! [`pad_right`]. See CHANGELOG.md.

/// Pads `s` with spaces on the left to `width` characters, so that it ends at the right edge
/// of a column. A string that is already `width` characters or longer comes back unchanged.
pub fn pad_left(s: &str, width: usize) -> String {
    format!("{}{s}", " ".repeat(missing(s, width)))
}

/// Pads `s` with spaces on the right to `width` characters, so that the next column lines up.
/// A string that is already `width` characters or longer comes back unchanged.
pub fn pad_right(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(missing(s, width)))
}

fn missing(s: &str, width: usize) -> usize {
    width.saturating_sub(s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_on_either_side() {
        assert_eq!(pad_left("7", 3), "  7");
        assert_eq!(pad_right("7", 3), "7  ");
        assert_eq!(pad_left("long", 2), "long");
        assert_eq!(pad_right("é", 2), "é ");
    }
}
