//! Errors as the user sees them: the application layer's [`AppError`] (a message naming the
//! culprit, a `hint:` where one helps, and an error kind mapped once to the exit code).

pub use flightdeck_app::error::exit;
pub use flightdeck_app::AppError as CliError;
