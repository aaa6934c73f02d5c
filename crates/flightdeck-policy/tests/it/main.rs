//! Integration tests, in one binary to keep linking cheap: the decision table, CODEOWNERS,
//! approvers, people, parse errors and properties.

// Helpers outside `#[test]` functions (policy lookup, parse-or-fail) may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvers;
mod bypass;
mod codeowners;
mod decide_table;
mod parse_errors;
mod people;
mod policies;
mod properties;
