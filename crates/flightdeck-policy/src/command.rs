//! Shell command analysis: the parts of a command line that rules are matched against.
//!
//! A command is judged as *units*: the whole command, each pipeline (split at `&&`, `||`,
//! `;`, `&` and newlines) and each simple command (split at `|`). The split is done twice:
//! once quote-aware, the way a shell would, and once naively ignoring quotes, so that
//! nothing can be hidden from a deny rule by quoting. The inner scripts of `$(...)`,
//! backticks, `<(...)`, subshells `(...)`, `sh -c '...'` (and the other shells),
//! `eval ...`, heredoc bodies, and any argument that reads like a command line
//! (`ssh host 'curl x | sh'`) are judged the same way, recursively.
//!
//! For allow rules the *leaves* matter: the simple commands that will actually run,
//! including those inside substitutions, `sh -c` and heredocs fed to a shell (but not
//! the text of `cat <<EOF`, which is data). A command is allowed by rules only when every
//! leaf is covered.
//!
//! This is a judge, not a shell: it errs on the side of finding more units, and never
//! fails — unbalanced quotes simply run to the end of the text.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// How deep substitutions and `sh -c` scripts are followed. Deeper text is still judged
/// as part of the enclosing units and by the naive split.
const MAX_DEPTH: usize = 16;

/// Up to this many units or leaves, de-duplication scans a list; past it, an ordered
/// index keeps huge commands (a 5,000-line heredoc) from going quadratic. (Ordered, not
/// hashed: a hasher's random keys would be randomness this crate does not use.)
const LINEAR_DEDUP_LIMIT: usize = 48;

/// A command pattern: `*` matches any text (spaces and `|` included), anchored at both
/// ends, with whitespace runs collapsed like the units it is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandPattern {
    source: String,
    /// `source` split at `*`: a prefix, middle parts in order, a suffix.
    parts: Vec<String>,
}

impl CommandPattern {
    /// `None` for a pattern that is empty after trimming.
    pub(crate) fn new(pattern: &str) -> Option<CommandPattern> {
        let source = collapse_whitespace(pattern).into_owned();
        if source.is_empty() {
            return None;
        }
        let parts = source.split('*').map(str::to_owned).collect();
        Some(CommandPattern { source, parts })
    }

    /// The pattern as normalised (what explanations show).
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The first byte a matching text must start with (`None` when it starts with `*`).
    pub(crate) fn first_byte(&self) -> Option<u8> {
        self.parts
            .first()
            .and_then(|part| part.as_bytes().first().copied())
    }

    /// Whether the pattern matches the whole of `text` (already normalised).
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let Some((first, rest)) = self.parts.split_first() else {
            return false;
        };
        let (first, rest) = (first.as_bytes(), rest);
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let last = last.as_bytes();
        if text.len() < first.len() + last.len()
            || !bytes_equal(text.get(..first.len()), first)
            || !bytes_equal(text.get(text.len() - last.len()..), last)
        {
            return false;
        }
        // Only `*` wildcards: taking each middle part at its leftmost position is optimal.
        let Some(mut window) = text.get(first.len()..text.len() - last.len()) else {
            return false;
        };
        for part in middle {
            match find_bytes(window, part.as_bytes()) {
                Some(end) => window = window.get(end..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }
}

/// Equality that checks the ends first: most candidates differ in their first or last
/// byte, and this runs for every unit and pattern.
fn bytes_equal(actual: Option<&[u8]>, expected: &[u8]) -> bool {
    let Some(actual) = actual else {
        return false;
    };
    if actual.len() != expected.len() {
        return false;
    }
    match expected.len() {
        0 => true,
        1..=16 => actual.iter().zip(expected).all(|(a, b)| a == b),
        _ => {
            actual.first() == expected.first()
                && actual.last() == expected.last()
                && actual == expected
        }
    }
}

/// The end of the first occurrence of `needle` in `haystack`. Needles are short pattern
/// parts, so a first-byte scan beats building a two-way searcher each time.
fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&head, tail)) = needle.split_first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(offset) = haystack.get(from..)?.iter().position(|&byte| byte == head) {
        let start = from + offset;
        let end = start + needle.len();
        if haystack.get(start + 1..end) == Some(tail) {
            return Some(end);
        }
        from = start + 1;
    }
    None
}

/// Trim and collapse every whitespace run to one space; borrows when nothing changes.
pub(crate) fn collapse_whitespace(text: &str) -> Cow<'_, str> {
    let trimmed = text.trim();
    let mut previous_space = false;
    let clean = trimmed.chars().all(|ch| {
        let ok = !ch.is_whitespace() || (ch == ' ' && !previous_space);
        previous_space = ch.is_whitespace();
        ok
    });
    if clean {
        return Cow::Borrowed(trimmed);
    }
    let mut collapsed = String::with_capacity(trimmed.len());
    let mut in_space = false;
    for ch in trimmed.chars() {
        if ch.is_whitespace() {
            if !in_space {
                collapsed.push(' ');
            }
            in_space = true;
        } else {
            collapsed.push(ch);
            in_space = false;
        }
    }
    Cow::Owned(collapsed)
}

/// A simple command that will run, as the allow rules must cover it. Both forms are
/// also units; these are their indices in [`CommandView::units`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Leaf {
    /// The command's text, whitespace collapsed.
    pub(crate) text: usize,
    /// The command without leading assignments, keywords and wrappers (`sudo`, `env`,
    /// `nohup`, ...), quotes removed, program path reduced to its name:
    /// `FOO=1 sudo /usr/bin/curl "x"` -> `curl x`.
    pub(crate) core: usize,
}

/// Everything a command is judged by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommandView {
    /// Distinct units, normalised, in the order found (whole command first).
    pub(crate) units: Vec<String>,
    /// Distinct leaves.
    pub(crate) leaves: Vec<Leaf>,
    /// The parts of the command that run but cannot be seen through (empty for most).
    pub(crate) unseen: Vec<Unseen>,
    /// Index of `units` once there are many.
    unit_index: BTreeMap<String, usize>,
    /// Index of `leaves` once there are many.
    leaf_index: BTreeSet<Leaf>,
}

/// Analyse a command line.
pub(crate) fn analyze(command: &str) -> CommandView {
    let mut view = CommandView::default();
    let script = Lexer::new(command).script(0, None);
    view.add_script(&script, 0, true);
    view.add_naive_split(command);
    view
}

impl CommandView {
    /// Add a unit unless it is empty or known; its index either way (`None` if empty).
    fn push_unit(&mut self, text: &str) -> Option<usize> {
        let text = collapse_whitespace(text);
        if text.is_empty() {
            return None;
        }
        let known = if self.units.len() < LINEAR_DEDUP_LIMIT {
            self.units.iter().position(|unit| *unit == *text)
        } else {
            if self.unit_index.is_empty() {
                self.unit_index = (self.units.iter().cloned()).zip(0..).collect();
            }
            self.unit_index.get(text.as_ref()).copied()
        };
        if known.is_some() {
            return known;
        }
        let index = self.units.len();
        if !self.unit_index.is_empty() {
            self.unit_index.insert(text.clone().into_owned(), index);
        }
        self.units.push(text.into_owned());
        Some(index)
    }

    fn push_leaf(&mut self, leaf: Leaf) {
        let known = if self.leaves.len() < LINEAR_DEDUP_LIMIT {
            self.leaves.contains(&leaf)
        } else {
            if self.leaf_index.is_empty() {
                self.leaf_index = self.leaves.iter().copied().collect();
            }
            !self.leaf_index.insert(leaf)
        };
        if !known {
            self.leaves.push(leaf);
        }
    }

    /// The text of a unit.
    pub(crate) fn unit(&self, index: usize) -> &str {
        self.units.get(index).map_or("", String::as_str)
    }

    /// Add a script's units; `runs` says whether its simple commands certainly run (and
    /// so are leaves) or are an argument that merely reads like a command line.
    fn add_script(&mut self, script: &Script<'_>, depth: usize, runs: bool) {
        let _ = self.push_unit(script.text);
        if runs && script.too_deep {
            self.add_unseen(
                script.text,
                "its substitutions nest deeper than the judge follows",
            );
        }
        for pipeline in &script.pipelines {
            let _ = self.push_unit(pipeline.text);
            let mut cores: Vec<String> = Vec::with_capacity(pipeline.commands.len());
            for (position, command) in pipeline.commands.iter().enumerate() {
                let mut unseen = Vec::new();
                if runs && !command.group {
                    unseen_parts(command, position > 0, &mut unseen);
                }
                let core = core_form(&command.words);
                let text = self.push_unit(command.text);
                let core_unit = self.push_unit(&core);
                if let (true, false, Some(text), Some(core)) =
                    (runs, command.group, text, core_unit)
                {
                    self.push_leaf(Leaf { text, core });
                }
                if !core.is_empty() {
                    cores.push(core);
                }
                for nested in &command.nested {
                    self.add_script(nested, depth + 1, runs);
                }
                let inner = inner_scripts(command, &mut unseen);
                if runs {
                    self.unseen.extend(unseen);
                }
                if depth < MAX_DEPTH {
                    for inner in inner {
                        let script = Lexer::new(&inner.text).script(depth + 1, None);
                        self.add_script(&script, depth + 1, runs && inner.runs);
                    }
                } else if runs && inner.iter().any(|inner| inner.runs) {
                    self.add_unseen(
                        command.text,
                        "it runs a script nested deeper than the judge follows",
                    );
                }
            }
            // `FOO=1 curl x|sudo sh` is judged as `curl x | sh` too.
            if cores.len() > 1 {
                let _ = self.push_unit(&cores.join(" | "));
            }
        }
        // A heredoc is a script when it feeds a shell; either way its text is judged, and
        // the substitutions of an unquoted one run.
        for heredoc in &script.heredocs {
            if depth < MAX_DEPTH {
                let body = Lexer::new(heredoc.body).script(depth + 1, None);
                self.add_script(&body, depth + 1, runs && heredoc.shell);
            } else if runs && heredoc.shell {
                self.add_unseen(
                    heredoc.body,
                    "a shell runs a here-document nested deeper than the judge follows",
                );
            }
            for nested in &heredoc.nested {
                self.add_script(nested, depth + 1, runs);
            }
        }
    }

    fn add_unseen(&mut self, part: &str, why: &'static str) {
        self.unseen.push(Unseen {
            part: part.to_owned(),
            why,
        });
    }

    /// Split ignoring quotes entirely, and also judge each piece with quote and
    /// substitution characters trimmed from its ends.
    fn add_naive_split(&mut self, command: &str) {
        for pipeline in naive_pipelines(command) {
            self.push_naive(pipeline);
            if pipeline.contains('|') {
                for simple in pipeline.split('|') {
                    self.push_naive(simple);
                }
            }
        }
    }

    /// A naive piece, the piece with quote and substitution characters trimmed from its
    /// ends, and the text after each of its first quotes: `ssh host 'curl x | sh'` must
    /// show `curl x | sh`.
    fn push_naive(&mut self, piece: &str) {
        const TRIM: &[char] = &['\'', '"', '`', '(', ')', '{', '}', '$', '\\'];
        const MAX_QUOTES: usize = 16;
        let _ = self.push_unit(piece);
        let _ = self.push_unit(piece.trim().trim_matches(TRIM));
        for (at, _) in piece.match_indices(['\'', '"', '`']).take(MAX_QUOTES) {
            if let Some(rest) = piece.get(at + 1..) {
                let _ = self.push_unit(rest.trim().trim_matches(TRIM));
            }
        }
    }
}

/// The text between the naive pipeline separators `;`, `&`, newline and `||`.
fn naive_pipelines(command: &str) -> Vec<&str> {
    let bytes = command.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let separator_len = match byte {
            b';' | b'&' | b'\n' => 1,
            b'|' if bytes.get(index + 1) == Some(&b'|') => 2,
            _ => 0,
        };
        if separator_len > 0 {
            pieces.push(command.get(start..index).unwrap_or_default());
            start = index + separator_len;
            index = start;
        } else {
            index += 1;
        }
    }
    pieces.push(command.get(start..).unwrap_or_default());
    pieces
}

/// Words that may precede the real program: reserved words of compound commands.
const KEYWORDS: &[&str] = &[
    "!", "{", "(", "then", "do", "else", "elif", "if", "while", "until", "time",
];

/// A program that runs its arguments as a command: its flags, the values of the flags
/// that take one, and its leading operands are skipped to find the program it runs.
struct Wrapper {
    name: &'static str,
    /// Flags whose value is the next word (`sudo -u bob`, `timeout -s KILL`).
    value_flags: &'static [&'static str],
    /// Operands before the command (`timeout DURATION`, `flock FILE`).
    operands: usize,
    /// Flags whose value is a command line the wrapper runs (`env -S`, `flock -c`): then
    /// the wrapper is the program, and the value is judged as an inner script.
    script_flags: &'static [&'static str],
}

const fn wrapper(
    name: &'static str,
    value_flags: &'static [&'static str],
    operands: usize,
    script_flags: &'static [&'static str],
) -> Wrapper {
    Wrapper {
        name,
        value_flags,
        operands,
        script_flags,
    }
}

#[rustfmt::skip]
const WRAPPERS: &[Wrapper] = &[
    wrapper("sudo", &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "--user",
        "--group", "--chdir", "--prompt", "--role", "--type", "--other-user", "--host",
        "--close-from", "--command-timeout"], 0, &[]),
    wrapper("doas", &["-u", "-C"], 0, &[]),
    wrapper("env", &["-u", "-C", "--unset", "--chdir"], 0, &["-S", "--split-string"]),
    wrapper("command", &[], 0, &[]),
    wrapper("builtin", &[], 0, &[]),
    wrapper("exec", &["-a"], 0, &[]),
    wrapper("nohup", &[], 0, &[]),
    wrapper("nice", &["-n", "--adjustment"], 0, &[]),
    wrapper("ionice", &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"], 0, &[]),
    wrapper("stdbuf", &["-i", "-o", "-e", "--input", "--output", "--error"], 0, &[]),
    wrapper("unbuffer", &[], 0, &[]),
    wrapper("setsid", &[], 0, &[]),
    wrapper("timeout", &["-s", "-k", "--signal", "--kill-after"], 1, &[]),
    wrapper("xargs", &["-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file",
        "--delimiter", "--max-lines", "--max-args", "--max-procs", "--max-chars",
        "--process-slot-var"], 0, &[]),
    wrapper("busybox", &[], 0, &[]),
    wrapper("flock", &["-w", "-E", "--timeout", "--conflict-exit-code"], 1, &["-c", "--command"]),
];

/// `watch` joins its arguments and runs them with `sh -c`.
const WATCH: Wrapper = wrapper("watch", &["-n", "-q", "--interval", "--equexit"], 0, &[]);

/// `find` runs the command after these up to `;` or `+`.
const FIND_EXEC: &[&str] = &["-exec", "-execdir", "-ok", "-okdir"];

/// Words that only close a compound command.
const TERMINATORS: &[&str] = &["}", "fi", "done", "esac", ")", ";;"];

/// Shells (and `su`) whose `-c` argument is a script.
const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "yash", "fish", "su",
];

/// Interpreters that read a program from standard input when given none.
const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "perl", "ruby", "node", "php",
];

/// The flag part of `--flag=value`.
fn flag_name(word: &str) -> &str {
    word.split_once('=').map_or(word, |(flag, _)| flag)
}

/// Where the command run by a wrapper starts, its words from `at` on; `None` when the
/// wrapper runs a script given as a flag's value, or nothing.
fn wrapped_program(words: &[String], mut at: usize, wrapper: &Wrapper) -> Option<usize> {
    while let Some(word) = words.get(at) {
        if word == "--" {
            at += 1;
            break;
        }
        if !(word.len() > 1 && word.starts_with('-')) {
            break;
        }
        if wrapper.script_flags.contains(&flag_name(word)) {
            return None;
        }
        at += 1;
        if !word.contains('=') && wrapper.value_flags.contains(&word.as_str()) {
            at += 1;
        }
    }
    at += wrapper.operands;
    // `flock FILE -c CMD`
    let word = words.get(at)?;
    if wrapper.script_flags.contains(&flag_name(word)) {
        return None;
    }
    Some(at)
}

/// Where the program that runs starts: past assignments, keywords and wrappers.
fn core_start(words: &[String]) -> usize {
    let mut at = 0;
    while let Some(first) = words.get(at) {
        if KEYWORDS.contains(&first.as_str()) || is_assignment(first) {
            at += 1;
            continue;
        }
        let name = program_name(first);
        let Some(wrapper) = WRAPPERS.iter().find(|wrapper| wrapper.name == name) else {
            break;
        };
        match wrapped_program(words, at + 1, wrapper) {
            Some(next) => at = next,
            None => break,
        }
    }
    at
}

fn core_words(words: &[String]) -> &[String] {
    words.get(core_start(words)..).unwrap_or_default()
}

fn core_form(words: &[String]) -> String {
    let core = core_words(words);
    if core.iter().all(|word| TERMINATORS.contains(&word.as_str())) {
        return String::new();
    }
    let mut text = String::new();
    for (index, word) in core.iter().enumerate() {
        if index == 0 {
            text.push_str(program_name(word));
        } else {
            text.push(' ');
            // Keep a quoted `a | b` argument recognisable as one argument, so that
            // `git commit -m 'x | sh'` does not read as a pipe into `sh`.
            if word.is_empty()
                || word.contains(|ch: char| ch.is_whitespace() || SHELL_SPECIAL.contains(&ch))
            {
                text.push('\'');
                text.push_str(word);
                text.push('\'');
            } else {
                text.push_str(word);
            }
        }
    }
    collapse_whitespace(&text).into_owned()
}

/// Characters that would read as operators when a word is shown unquoted.
const SHELL_SPECIAL: &[char] = &['|', ';'];

/// A part of a command whose meaning the judge cannot know: what it runs is only decided
/// when the shell runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unseen {
    /// The command text (or word) concerned.
    pub(crate) part: String,
    /// Why it cannot be seen through, as the end of a sentence.
    pub(crate) why: &'static str,
}

/// A script found in a simple command's arguments.
struct InnerScript {
    text: String,
    /// It certainly runs (`sh -c`, `eval`, `find -exec`, `watch`), rather than merely
    /// reading like a command line.
    runs: bool,
}

/// Words re-quoted so that lexing their join gives the same words back.
fn requote(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_./{}=:,+@%".contains(ch))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

/// The scripts in a simple command's arguments, and whether they certainly run:
/// `eval ARGS...`, `SHELL ... -c SCRIPT`, `find -exec CMD ;`, `watch CMD`, `env -S CMD`
/// and `flock FILE -c CMD` do; any other argument that reads like a command line (`ssh
/// host 'curl x | sh'`) may, since too many programs run their arguments to list them
/// all, so it is judged but not required to be covered by an allow rule. A script that is
/// itself the result of an expansion cannot be judged: it is reported as unseen.
fn inner_scripts(command: &SimpleCommand<'_>, unseen: &mut Vec<Unseen>) -> Vec<InnerScript> {
    let words = &command.words;
    let expands = |index: usize| command.expands.get(index).copied().unwrap_or(false);
    let mut scripts: Vec<String> = Vec::new();
    let mut unseen_script = |text: &str, why| {
        unseen.push(Unseen {
            part: text.to_owned(),
            why,
        });
    };
    let start = core_start(words);
    if let Some(program) = words.get(start) {
        let args = words.get(start + 1..).unwrap_or_default();
        if program_name(program) == "eval" && !args.is_empty() {
            if (start + 1..words.len()).any(expands) {
                unseen_script(command.text, "`eval` runs text made by an expansion");
            } else {
                scripts.push(args.join(" "));
            }
        }
    }
    for (index, word) in words.iter().enumerate() {
        let name = program_name(word);
        if SHELLS.contains(&name) {
            let mut rest = (index + 1..words.len()).filter_map(|at| Some((at, words.get(at)?)));
            while let Some((_, arg)) = rest.next() {
                let is_c_flag = arg.len() > 1
                    && arg.starts_with('-')
                    && !arg.starts_with("--")
                    && arg.chars().skip(1).all(|ch| ch.is_ascii_alphabetic())
                    && arg.contains('c');
                if is_c_flag || arg == "--command" {
                    if let Some((at, script)) = rest.next() {
                        if expands(at) {
                            unseen_script(
                                command.text,
                                "a shell's `-c` script is made by an expansion",
                            );
                        } else {
                            scripts.push(script.clone());
                        }
                    }
                    break;
                }
                if let Some(script) = arg.strip_prefix("--command=") {
                    scripts.push(script.to_owned());
                    break;
                }
            }
        } else if name == "find" {
            let mut at = index + 1;
            while let Some(word) = words.get(at) {
                at += 1;
                if !FIND_EXEC.contains(&word.as_str()) {
                    continue;
                }
                let end = (at..words.len())
                    .find(|&end| words.get(end).is_some_and(|w| w == ";" || w == "+"))
                    .unwrap_or(words.len());
                if expands(at) {
                    unseen_script(
                        command.text,
                        "`find -exec` runs a program named by an expansion",
                    );
                } else {
                    scripts.push(requote(words.get(at..end).unwrap_or_default()));
                }
                at = end + 1;
            }
        } else if name == WATCH.name {
            if let Some(at) = wrapped_program(words, index + 1, &WATCH) {
                if (at..words.len()).any(expands) {
                    unseen_script(command.text, "`watch` runs text made by an expansion");
                } else {
                    scripts.push(words.get(at..).unwrap_or_default().join(" "));
                }
            }
        } else if let Some(wrapper) = WRAPPERS
            .iter()
            .find(|wrapper| wrapper.name == name && !wrapper.script_flags.is_empty())
        {
            // `env -S CMD`, `env --split-string=CMD`, `flock [-w N] FILE -c CMD`
            let mut at = index + 1;
            while let Some(word) = words.get(at) {
                at += 1;
                let flag = flag_name(word);
                if !wrapper.script_flags.contains(&flag) {
                    continue;
                }
                let (script, from) = match word.split_once('=') {
                    Some((_, value)) => (Some(value.to_owned()), at - 1),
                    None => (words.get(at).cloned(), at),
                };
                if expands(from) {
                    unseen_script(
                        command.text,
                        "a wrapper runs a command line made by an expansion",
                    );
                } else if let Some(script) = script {
                    scripts.push(script);
                }
                break;
            }
        }
    }
    let mut found: Vec<InnerScript> = scripts
        .into_iter()
        .map(|text| InnerScript { text, runs: true })
        .collect();
    for word in words.iter().skip(1) {
        let reads_like_a_command =
            word.contains(|ch: char| ch.is_whitespace() || SHELL_SPECIAL.contains(&ch));
        if reads_like_a_command && !found.iter().any(|script| script.text == *word) {
            found.push(InnerScript {
                text: word.clone(),
                runs: false,
            });
        }
    }
    found
}

/// What of a simple command that runs the judge cannot see through: a program named by an
/// expansion, a shell or interpreter reading its program from a pipe, a process
/// substitution or an expanded here-string.
fn unseen_parts(command: &SimpleCommand<'_>, piped: bool, unseen: &mut Vec<Unseen>) {
    let words = &command.words;
    let start = core_start(words);
    let Some(program) = words.get(start) else {
        return;
    };
    let expands = |index: usize| command.expands.get(index).copied().unwrap_or(false);
    let mut report = |why| {
        unseen.push(Unseen {
            part: command.text.to_owned(),
            why,
        });
    };
    if expands(start) && program != "[" && program != "[[" {
        report("the program it runs is named by an expansion");
        return;
    }
    let name = program_name(program);
    let args = words.get(start + 1..).unwrap_or_default();
    let shell = SHELLS.contains(&name) && name != "su";
    let interpreter = INTERPRETERS.contains(&name);
    if shell || name == "source" || name == "." {
        let operand = args.iter().find(|arg| !arg.starts_with('-'));
        if operand.is_some_and(|operand| operand.starts_with("<(")) {
            report("it runs a script that a process substitution prints");
            return;
        }
    }
    if shell || interpreter {
        for (offset, word) in args.iter().enumerate() {
            if let Some(rest) = word.strip_prefix("<<<") {
                let at = start + 1 + offset;
                let string_expands = if rest.is_empty() {
                    expands(at + 1)
                } else {
                    expands(at)
                };
                if string_expands {
                    report("it runs a here-string made by an expansion");
                    return;
                }
            }
        }
    }
    if piped && (shell || interpreter) && reads_program_from_stdin(args, interpreter) {
        report("it runs whatever the command before it prints");
    }
}

/// Whether a shell or interpreter with these arguments reads its program from stdin.
fn reads_program_from_stdin(args: &[String], interpreter: bool) -> bool {
    let program_flags: &[char] = if interpreter {
        &['c', 'e', 'E', 'm', 'r']
    } else {
        &['c']
    };
    let mut options_end = false;
    for arg in args {
        if arg == "-" {
            return true;
        }
        if !options_end && arg == "--" {
            options_end = true;
            continue;
        }
        if !options_end && arg.len() > 1 && arg.starts_with('-') && !arg.starts_with("--") {
            let letters = arg.get(1..).unwrap_or_default();
            if !interpreter && letters.contains('s') {
                return true;
            }
            if letters.contains(program_flags) {
                return false;
            }
            continue;
        }
        if !options_end && arg.starts_with("--") {
            continue;
        }
        // The first operand is a script file (for `sh -s`, handled above, an argument).
        if arg.starts_with('<') || arg.contains('>') {
            continue;
        }
        return false;
    }
    true
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        }
        None => false,
    }
}

/// `/usr/bin/curl` -> `curl`.
fn program_name(word: &str) -> &str {
    match word.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name,
        _ => word,
    }
}

/// A parsed script: pipelines of simple commands. Texts borrow from the command line.
#[derive(Debug)]
struct Script<'a> {
    text: &'a str,
    pipelines: Vec<Pipeline<'a>>,
    heredocs: Vec<Heredoc<'a>>,
    /// Substitutions nested past [`MAX_DEPTH`] were skipped, not judged.
    too_deep: bool,
}

/// The body of a `<<DELIMITER` here-document.
#[derive(Debug)]
struct Heredoc<'a> {
    body: &'a str,
    /// The command it feeds is a shell, so the body runs as a script.
    shell: bool,
    /// `$(...)` and backticks in the body of an unquoted heredoc, which the shell runs.
    nested: Vec<Script<'a>>,
}

/// A `<<DELIMITER` seen on the current line; its body starts after the next newline.
#[derive(Debug)]
struct PendingHeredoc {
    delimiter: String,
    strip_tabs: bool,
    quoted: bool,
    shell: bool,
}

#[derive(Debug)]
struct Pipeline<'a> {
    text: &'a str,
    commands: Vec<SimpleCommand<'a>>,
}

#[derive(Debug)]
struct SimpleCommand<'a> {
    text: &'a str,
    /// Words with quotes removed; substitutions kept as their raw text.
    words: Vec<String>,
    /// For each word: the shell expands it (an unquoted or double-quoted `$`, a backtick,
    /// an unquoted glob or brace), so what it becomes is unknown here.
    expands: Vec<bool>,
    /// Scripts inside `$(...)`, backticks, `<(...)` and `(...)`.
    nested: Vec<Script<'a>>,
    /// The command is a subshell group `( ... )`, not a program; its contents are leaves.
    group: bool,
}

#[derive(Default)]
struct CommandBuilder<'a> {
    start: Option<usize>,
    words: Vec<String>,
    word: Option<Vec<u8>>,
    /// The word being built contains an expansion.
    word_expands: bool,
    expands: Vec<bool>,
    nested: Vec<Script<'a>>,
    group: bool,
}

impl<'a> CommandBuilder<'a> {
    /// Note that a word (and the command) starts at `pos`.
    fn begin(&mut self, pos: usize) {
        self.start.get_or_insert(pos);
        self.word.get_or_insert_with(Vec::new);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.word
            .get_or_insert_with(Vec::new)
            .extend_from_slice(bytes);
    }

    /// Note that the word being built contains an expansion.
    fn expansion(&mut self) {
        self.word.get_or_insert_with(Vec::new);
        self.word_expands = true;
    }

    fn end_word(&mut self) {
        if let Some(word) = self.word.take() {
            self.words.push(String::from_utf8_lossy(&word).into_owned());
            self.expands.push(std::mem::take(&mut self.word_expands));
        }
    }

    fn finish(&mut self, src: &'a str, end: usize) -> Option<SimpleCommand<'a>> {
        self.end_word();
        let builder = std::mem::take(self);
        let start = builder.start?;
        Some(SimpleCommand {
            text: src.get(start..end).unwrap_or_default(),
            words: builder.words,
            expands: builder.expands,
            nested: builder.nested,
            group: builder.group,
        })
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    pending_heredocs: Vec<PendingHeredoc>,
    /// Something was nested past [`MAX_DEPTH`] and skipped.
    too_deep: bool,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            pending_heredocs: Vec::new(),
            too_deep: false,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// Lex a script from the current position up to `close` (not consumed) or the end.
    fn script(&mut self, depth: usize, close: Option<u8>) -> Script<'a> {
        let start = self.pos;
        let mut pipelines = Vec::new();
        let mut commands = Vec::new();
        let mut pipeline_start = self.pos;
        let mut command = CommandBuilder::default();
        let mut heredocs = Vec::new();

        while let Some(byte) = self.peek(0) {
            if Some(byte) == close {
                break;
            }
            let next = self.peek(1);
            match byte {
                b' ' | b'\t' | b'\r' => {
                    command.end_word();
                    self.pos += 1;
                }
                b'\n' | b';' | b'&' | b'|' if self.is_pipeline_separator(byte, next, &command) => {
                    commands.extend(command.finish(self.src, self.pos));
                    self.push_pipeline(&mut pipelines, &mut commands, pipeline_start);
                    let double = matches!((byte, next), (b'&', Some(b'&')) | (b'|', Some(b'|')));
                    self.pos += if double { 2 } else { 1 };
                    if byte == b'\n' && !self.pending_heredocs.is_empty() {
                        self.read_heredocs(depth, &mut heredocs);
                    }
                    pipeline_start = self.pos;
                }
                b'|' => {
                    commands.extend(command.finish(self.src, self.pos));
                    self.pos += if next == Some(b'&') { 2 } else { 1 };
                }
                b'\\' => {
                    if next == Some(b'\n') {
                        command.end_word();
                        self.pos += 2;
                    } else {
                        command.begin(self.pos);
                        let len = next.map_or(0, utf8_len);
                        let escaped = self
                            .bytes
                            .get(self.pos + 1..self.pos + 1 + len)
                            .unwrap_or_default();
                        command.push(escaped);
                        self.pos += 1 + len;
                    }
                }
                b'\'' => {
                    command.begin(self.pos);
                    let body_start = self.pos + 1;
                    let body_end = self
                        .bytes
                        .get(body_start..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'\''))
                        .map_or(self.bytes.len(), |offset| body_start + offset);
                    command.push(self.bytes.get(body_start..body_end).unwrap_or_default());
                    self.pos = (body_end + 1).min(self.bytes.len());
                }
                b'"' => {
                    command.begin(self.pos);
                    self.double_quoted(depth, &mut command);
                }
                // A here-string: its word is the command's stdin.
                b'<' if next == Some(b'<') && self.peek(2) == Some(b'<') => {
                    command.end_word();
                    command.begin(self.pos);
                    command.push(b"<<<");
                    command.end_word();
                    self.pos += 3;
                }
                b'<' if next == Some(b'<') => {
                    command.end_word();
                    command.begin(self.pos);
                    self.heredoc_operator(&mut command);
                }
                b'$' | b'<' | b'>' if next == Some(b'(') => {
                    command.begin(self.pos);
                    command.expansion();
                    self.substitution(depth, &mut command, 2, b')');
                }
                b'`' => {
                    command.begin(self.pos);
                    command.expansion();
                    self.substitution(depth, &mut command, 1, b'`');
                }
                b'(' if command.word.is_none() => {
                    let first = command.start.is_none();
                    command.begin(self.pos);
                    self.substitution(depth, &mut command, 1, b')');
                    command.group |= first;
                }
                b'#' if command.word.is_none() => {
                    while let Some(byte) = self.peek(0) {
                        if byte == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => {
                    command.begin(self.pos);
                    if matches!(byte, b'$' | b'*' | b'?' | b'[' | b'{') {
                        command.expansion();
                    }
                    command.push(&[byte]);
                    self.pos += 1;
                }
            }
        }
        commands.extend(command.finish(self.src, self.pos));
        self.push_pipeline(&mut pipelines, &mut commands, pipeline_start);
        Script {
            text: self.src.get(start..self.pos).unwrap_or_default(),
            pipelines,
            heredocs,
            too_deep: self.too_deep,
        }
    }

    /// `<<DELIM`, `<<-DELIM`, `<<'DELIM'`: note the heredoc; its body follows the line.
    fn heredoc_operator(&mut self, command: &mut CommandBuilder<'a>) {
        let start = self.pos;
        self.pos += 2;
        let strip_tabs = self.peek(0) == Some(b'-');
        if strip_tabs {
            self.pos += 1;
        }
        while matches!(self.peek(0), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        let mut delimiter = Vec::new();
        let mut quoted = false;
        while let Some(byte) = self.peek(0) {
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'|' | b'&' | b'<' | b'>' | b'(' | b')' => {
                    break
                }
                b'\'' | b'"' => {
                    quoted = true;
                    let body_start = self.pos + 1;
                    let body_end = self
                        .bytes
                        .get(body_start..)
                        .and_then(|rest| rest.iter().position(|&b| b == byte))
                        .map_or(self.bytes.len(), |offset| body_start + offset);
                    delimiter.extend_from_slice(
                        self.bytes.get(body_start..body_end).unwrap_or_default(),
                    );
                    self.pos = (body_end + 1).min(self.bytes.len());
                }
                b'\\' => {
                    quoted = true;
                    delimiter.extend(self.peek(1));
                    self.pos = (self.pos + 2).min(self.bytes.len());
                }
                _ => {
                    delimiter.push(byte);
                    self.pos += 1;
                }
            }
        }
        command.push(self.bytes.get(start..self.pos).unwrap_or_default());
        let shell = core_words(&command.words)
            .first()
            .is_some_and(|program| SHELLS.contains(&program_name(program)));
        if !delimiter.is_empty() {
            self.pending_heredocs.push(PendingHeredoc {
                delimiter: String::from_utf8_lossy(&delimiter).into_owned(),
                strip_tabs,
                quoted,
                shell,
            });
        }
    }

    /// At the start of a line after `<<DELIM`s: consume each body up to its delimiter line.
    fn read_heredocs(&mut self, depth: usize, heredocs: &mut Vec<Heredoc<'a>>) {
        for pending in std::mem::take(&mut self.pending_heredocs) {
            let body_start = self.pos;
            let mut body_end = self.bytes.len();
            while self.pos < self.bytes.len() {
                let line_end = self
                    .bytes
                    .get(self.pos..)
                    .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
                    .map_or(self.bytes.len(), |offset| self.pos + offset);
                let line = self.src.get(self.pos..line_end).unwrap_or_default();
                let line = line.strip_suffix('\r').unwrap_or(line);
                let line = if pending.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                let next_line = (line_end + 1).min(self.bytes.len());
                if line == pending.delimiter {
                    body_end = self.pos;
                    self.pos = next_line;
                    break;
                }
                self.pos = next_line;
            }
            let body = self.src.get(body_start..body_end).unwrap_or_default();
            let nested = if pending.quoted {
                Vec::new()
            } else if depth >= MAX_DEPTH {
                self.too_deep |= body.contains(['$', '`']);
                Vec::new()
            } else {
                let mut expansions = CommandBuilder::default();
                let mut body_lexer = Lexer::new(body);
                body_lexer.expand_until(depth, &mut expansions, None);
                self.too_deep |= body_lexer.too_deep;
                expansions.nested
            };
            heredocs.push(Heredoc {
                body,
                shell: pending.shell,
                nested,
            });
        }
    }

    /// `&&`, `||`, `;`, newline and a background `&` end a pipeline; the `&` of a
    /// redirection (`2>&1`, `&>file`) does not.
    fn is_pipeline_separator(&self, byte: u8, next: Option<u8>, command: &CommandBuilder) -> bool {
        match byte {
            b'\n' | b';' => true,
            b'|' => next == Some(b'|'),
            b'&' => {
                let after_redirect = command
                    .word
                    .as_ref()
                    .and_then(|word| word.last())
                    .is_some_and(|&last| last == b'>' || last == b'<');
                next == Some(b'&') || !(after_redirect || next == Some(b'>'))
            }
            _ => false,
        }
    }

    fn push_pipeline(
        &self,
        pipelines: &mut Vec<Pipeline<'a>>,
        commands: &mut Vec<SimpleCommand<'a>>,
        start: usize,
    ) {
        if commands.is_empty() {
            return;
        }
        pipelines.push(Pipeline {
            text: self.src.get(start..self.pos).unwrap_or_default(),
            commands: std::mem::take(commands),
        });
    }

    fn double_quoted(&mut self, depth: usize, command: &mut CommandBuilder<'a>) {
        self.pos += 1;
        self.expand_until(depth, command, Some(b'"'));
    }

    /// Text where only escapes and substitutions are special (a double-quoted string,
    /// an unquoted heredoc body), up to `end` (consumed) or the end of the input.
    fn expand_until(&mut self, depth: usize, command: &mut CommandBuilder<'a>, end: Option<u8>) {
        while let Some(byte) = self.peek(0) {
            match byte {
                _ if Some(byte) == end => {
                    self.pos += 1;
                    return;
                }
                b'\\' => match self.peek(1) {
                    Some(escaped @ (b'"' | b'\\' | b'$' | b'`')) => {
                        command.push(&[escaped]);
                        self.pos += 2;
                    }
                    Some(b'\n') => self.pos += 2,
                    _ => {
                        command.push(b"\\");
                        self.pos += 1;
                    }
                },
                b'$' if self.peek(1) == Some(b'(') => {
                    command.expansion();
                    self.substitution(depth, command, 2, b')');
                }
                b'`' => {
                    command.expansion();
                    self.substitution(depth, command, 1, b'`');
                }
                _ => {
                    if byte == b'$' {
                        command.expansion();
                    }
                    command.push(&[byte]);
                    self.pos += 1;
                }
            }
        }
    }

    /// A nested script opened by `open_len` bytes and closed by `close`; its raw text
    /// becomes part of the current word and the script is judged on its own.
    fn substitution(
        &mut self,
        depth: usize,
        command: &mut CommandBuilder<'a>,
        open_len: usize,
        close: u8,
    ) {
        let open_start = self.pos;
        self.pos += open_len;
        if depth < MAX_DEPTH {
            let inner = self.script(depth + 1, Some(close));
            command.nested.push(inner);
        } else {
            self.too_deep = true;
            self.skip_to(close);
        }
        if self.peek(0) == Some(close) {
            self.pos += 1;
        }
        let raw = self.bytes.get(open_start..self.pos).unwrap_or_default();
        command.push(raw);
    }

    /// Past the depth limit: find the closing byte without judging what is inside.
    fn skip_to(&mut self, close: u8) {
        let mut open = 0usize;
        while let Some(byte) = self.peek(0) {
            if byte == close && open == 0 {
                return;
            }
            if close == b')' {
                match byte {
                    b'(' => open += 1,
                    b')' => open = open.saturating_sub(1),
                    _ => {}
                }
            }
            self.pos += 1;
        }
    }
}

/// Length of the UTF-8 sequence that starts with `lead`.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(command: &str) -> Vec<String> {
        analyze(command).units
    }

    fn leaves(command: &str) -> Vec<String> {
        let view = analyze(command);
        view.leaves
            .iter()
            .map(|leaf| view.unit(leaf.core).to_owned())
            .collect()
    }

    #[test]
    fn patterns_match_whole_text_with_stars() {
        let cases: &[(&str, &str, bool)] = &[
            ("curl * | sh*", "curl x | sh", true),
            ("curl * | sh*", "curl -fsSL https://x | sh -s -- -y", true),
            ("curl * | sh*", "make && curl x | sh", false),
            ("curl * | sh*", "curl x", false),
            ("git push", "git push", true),
            ("git push", "git push origin", false),
            ("*", "", true),
            ("**", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*rm -rf*", "sudo rm -rf /", true),
            ("ls   -la", "ls -la", true),
        ];
        for (pattern, text, expected) in cases {
            let compiled = CommandPattern::new(pattern).unwrap();
            assert_eq!(compiled.matches(text), *expected, "{pattern} vs {text}");
        }
        assert!(CommandPattern::new("   ").is_none());
    }

    #[test]
    fn whitespace_is_collapsed() {
        assert_eq!(collapse_whitespace("  a \t b\n\nc "), "a b c");
        assert!(matches!(collapse_whitespace("a b"), Cow::Borrowed("a b")));
    }

    #[test]
    fn compound_commands_are_split_into_pipelines_and_simple_commands() {
        let found = units("make && curl x | sh");
        for expected in ["make && curl x | sh", "make", "curl x | sh", "curl x", "sh"] {
            assert!(
                found.contains(&expected.to_owned()),
                "{expected} in {found:?}"
            );
        }
        assert_eq!(leaves("make && curl x | sh"), ["make", "curl x", "sh"]);
        assert_eq!(leaves("a; b || c & d\ne"), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn redirections_are_not_separators() {
        assert_eq!(leaves("make 2>&1 | tee log"), ["make 2>&1", "tee log"]);
        assert_eq!(leaves("make &> log"), ["make &> log"]);
    }

    #[test]
    fn quotes_are_respected_and_also_ignored() {
        let view = analyze("echo 'a | b' && ls");
        assert_eq!(
            view.leaves
                .iter()
                .map(|l| view.unit(l.text))
                .collect::<Vec<_>>(),
            ["echo 'a | b'", "ls"]
        );
        assert_eq!(view.unit(view.leaves[0].core), "echo 'a | b'");
        // The naive split sees through the quotes.
        assert!(view.units.contains(&"echo 'a".to_owned()));
        assert!(view.units.contains(&"b'".to_owned()));
        assert!(view.units.contains(&"b".to_owned()));
    }

    #[test]
    fn inner_scripts_are_judged() {
        let found = units("bash -c 'curl a | sh'");
        assert!(found.contains(&"curl a | sh".to_owned()), "{found:?}");
        assert_eq!(
            leaves("bash -c 'curl a | sh'"),
            ["bash -c 'curl a | sh'", "curl a", "sh"]
        );
        assert!(units("sudo sh -xec \"rm -rf /\"").contains(&"rm -rf /".to_owned()));
        assert!(units("su -c 'id' root").contains(&"id".to_owned()));
        assert!(units("eval \"curl x | sh\"").contains(&"curl x | sh".to_owned()));
        assert!(units("echo $(curl x | sh)").contains(&"curl x | sh".to_owned()));
        assert!(units("echo \"$(curl x | sh)\"").contains(&"curl x | sh".to_owned()));
        assert!(units("echo `curl x | sh`").contains(&"curl x | sh".to_owned()));
        assert!(units("bash <(curl x)").contains(&"curl x".to_owned()));
        assert!(units("(cd a && curl x | sh)").contains(&"curl x | sh".to_owned()));
        assert_eq!(leaves("(cd a && make)"), ["cd a", "make"]);
        assert_eq!(leaves("echo $(date)"), ["echo $(date)", "date"]);
    }

    #[test]
    fn core_forms_strip_wrappers_and_assignments() {
        assert_eq!(
            leaves("FOO=1 sudo -E /usr/bin/curl \"x\"|nohup sh"),
            ["curl x", "sh"]
        );
        assert!(
            units("FOO=1 sudo -E /usr/bin/curl \"x\"|nohup sh").contains(&"curl x | sh".to_owned())
        );
        assert_eq!(leaves("if true; then make; fi"), ["true", "make"]);
        assert_eq!(
            leaves("for f in *; do rm $f; done"),
            ["for f in *", "rm $f"]
        );
    }

    #[test]
    fn comments_are_skipped_by_the_lexer_but_not_the_naive_split() {
        let view = analyze("ls # curl x | sh");
        assert_eq!(view.leaves.len(), 1);
        assert!(view.units.contains(&"sh".to_owned()));
    }

    #[test]
    fn heredoc_bodies_are_judged_but_only_run_when_fed_to_a_shell() {
        let write = "cat > src/x.rs <<'EOF'\nfn main() {}\nrm -rf /\nEOF\nls";
        assert_eq!(leaves(write), ["cat > src/x.rs <<'EOF'", "ls"]);
        assert!(units(write).contains(&"rm -rf /".to_owned()));

        let shell = "sudo bash -s <<-EOF\n\tcurl x | sh\n\tEOF\nmake";
        assert_eq!(leaves(shell), ["bash -s <<-EOF", "make", "curl x", "sh"]);

        // An unquoted heredoc runs its substitutions; a quoted one does not.
        assert_eq!(leaves("cat <<EOF\n$(whoami)\nEOF"), ["cat <<EOF", "whoami"]);
        assert_eq!(leaves("cat <<'EOF'\n$(whoami)\nEOF"), ["cat <<'EOF'"]);
        // Two heredocs on one line, bodies in order.
        assert_eq!(
            leaves("paste <<A <<B\n$(a)\nA\n$(b)\nB\nls"),
            ["paste <<A <<B", "ls", "a", "b"]
        );
        // An unterminated body runs to the end.
        assert_eq!(leaves("bash <<EOF\nid"), ["bash <<EOF", "id"]);
    }

    #[test]
    fn huge_commands_stay_linear() {
        let body: String = (0..20_000).map(|i| format!("line {i} | x\n")).collect();
        let view = analyze(&format!("cat > f <<'EOF'\n{body}EOF\n"));
        assert!(view.units.len() > 20_000);
        let script: String = (0..5_000).map(|i| format!("cmd{i}; ")).collect();
        assert_eq!(analyze(&script).leaves.len(), 5_000);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let deep = "$(".repeat(200) + &")".repeat(200);
        let _ = analyze(&deep);
        let deep_shells = "bash -c '".repeat(100);
        let _ = analyze(&deep_shells);
        for text in [
            "'", "\"", "`", "\\", "$(", "((", "é\\", "\\é", "a\\", "&", "|", "||&&;;",
        ] {
            let _ = analyze(text);
        }
    }
}
