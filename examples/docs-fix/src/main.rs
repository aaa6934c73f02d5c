//! `greet [--shout] [--times N] NAME`: says hello.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match greeting(&args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("greet: {message}");
            ExitCode::from(2)
        }
    }
}

/// What `greet` prints for `args`, or why it cannot.
fn greeting(args: &[String]) -> Result<String, String> {
    let (mut shout, mut times, mut name) = (false, 1, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shout" => shout = true,
            "--times" => {
                let n = args.next().ok_or("--times needs a number")?;
                times = n
                    .parse()
                    .map_err(|_| format!("--times {n}: not a number"))?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            other if name.is_none() => name = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    let name = name.ok_or("usage: greet [--shout] [--times N] NAME")?;
    let line = format!("Hello, {name}!");
    let line = if shout { line.to_uppercase() } else { line };
    Ok(vec![line; times].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greet(args: &[&str]) -> Result<String, String> {
        greeting(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn greets_by_name() {
        assert_eq!(greet(&["Ada"]).unwrap(), "Hello, Ada!");
        assert_eq!(greet(&["--shout", "Ada"]).unwrap(), "HELLO, ADA!");
        assert_eq!(
            greet(&["--times", "2", "Ada"]).unwrap(),
            "Hello, Ada!\nHello, Ada!"
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(
            greet(&["--loud", "Ada"]).unwrap_err(),
            "unknown option --loud"
        );
        assert!(greet(&[]).is_err());
    }
}
