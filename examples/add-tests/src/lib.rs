//! Helpers for a small static blog: URL slugs and reading times.

/// The slug for a post's URL: ASCII letters and digits, lowercased, with every run of
/// anything else (spaces, punctuation, non-ASCII letters) turned into one `-`, and no `-`
/// at either end. `"Hello, World!"` becomes `"hello-world"`.
pub fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    let mut gap = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !slug.is_empty() {
                slug.push('-');
            }
            gap = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    slug
}

/// Minutes it takes to read `text` at 200 words a minute, rounded up; at least 1.
pub fn reading_minutes(text: &str) -> usize {
    let words = text.split_whitespace().count();
    words.div_ceil(200).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_take_a_minute() {
        assert_eq!(reading_minutes(""), 1);
        assert_eq!(reading_minutes("just a few words"), 1);
    }

    #[test]
    fn reading_time_rounds_up() {
        assert_eq!(reading_minutes(&"word ".repeat(201)), 2);
    }
}
