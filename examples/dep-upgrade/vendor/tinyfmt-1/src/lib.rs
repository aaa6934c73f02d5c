//! tinyfmt 1: tiny text-alignment helpers.

/// Pads `s` with spaces on the left to `width` characters, so that it ends at the right edge
/// of a column. A string that is already `width` characters or longer comes back unchanged.
pub fn pad(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len >= width {
        return s.to_string();
    }
    format!("{}{s}", " ".repeat(width - len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_on_the_left() {
        assert_eq!(pad("7", 3), "  7");
        assert_eq!(pad("long", 2), "long");
    }
}
