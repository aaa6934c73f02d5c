//! Plain-text receipts: one line per item with the prices right-aligned in a column, then
//! the total.

/// How wide the item column is.
pub const ITEM_WIDTH: usize = 16;
/// How wide the price column is.
pub const PRICE_WIDTH: usize = 8;

/// `cents` as dollars and cents: `1250` is `"12.50"`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// One line of a receipt: the item, then its price at the right edge of the price column.
pub fn line(item: &str, cents: u64) -> String {
    let price = tinyfmt::pad(&money(cents), PRICE_WIDTH);
    format!("{item:<ITEM_WIDTH$}{price}")
}

/// The receipt for `items`: a line for each, then a line with the total.
pub fn receipt(items: &[(&str, u64)]) -> String {
    let mut text = String::new();
    for (item, cents) in items {
        text.push_str(&line(item, *cents));
        text.push('\n');
    }
    let total = items.iter().map(|(_, cents)| cents).sum();
    text.push_str(&line("Total", total));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_two_decimals() {
        assert_eq!(money(1250), "12.50");
        assert_eq!(money(7), "0.07");
    }

    #[test]
    fn prices_line_up_at_the_right() {
        assert_eq!(line("Coffee", 350), "Coffee              3.50");
        assert_eq!(line("Cake", 1275), "Cake               12.75");
    }

    #[test]
    fn the_receipt_ends_with_the_total() {
        let text = receipt(&[("Coffee", 350), ("Cake", 1275)]);
        assert_eq!(text.lines().last(), Some("Total              16.25"));
        assert_eq!(text.lines().count(), 3);
    }
}
