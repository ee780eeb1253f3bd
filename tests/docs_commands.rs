//! The documentation cannot rot silently: every `latdiff …` command line in the shell
//! blocks (```sh, ```bash) of README.md and docs/*.md must parse with the program's own
//! command line (`cli::help::command`, what `latdiff` itself parses with), and every key of
//! every command must appear in docs/reference.md. Nothing is run: parsing only.
//!
//! A command line is found after optional `NAME=value` assignments, either at the start or
//! after a launcher (`mpirun -n 4 --bind-to none`, `srun`, …); the binary may be written
//! `latdiff`, a path ending in `/latdiff`, `$BIN` or `$LATDIFF`. Lines joined by a trailing
//! `\` are one command. Placeholders stand for values: a whole-token `$VAR`, `${VAR}` or an
//! upper-case word (`N`, `FILE`) becomes the flag's first possible value, or `1`; `…` and
//! `...` (the rest of a command left out) are dropped.

use clap::FromArgMatches;
use std::path::{Path, PathBuf};

const LAUNCHERS: &[&str] = &["mpirun", "mpiexec", "srun", "time", "nice", "timeout", "env"];

struct Found {
    place: String,
    args: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md (not docs/studies: dated records of the commands of their day).
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The shell blocks' logical lines (continuations joined) with their first line number.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_shell = false;
    let mut in_other = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            if in_shell || in_other {
                in_shell = false;
                in_other = false;
            } else if matches!(lang.trim(), "sh" | "bash" | "shell" | "console") {
                in_shell = true;
            } else {
                in_other = true;
            }
            continue;
        }
        if !in_shell {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        let body = strip_comment(line);
        match body.trim_end().strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(&body);
                out.push((start, joined));
            }
        }
    }
    out
}

/// The line without a `#` comment (a `#` at the start or after a blank, outside quotes).
fn strip_comment(line: &str) -> String {
    let (mut quote, mut prev_blank) = (None, true);
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev_blank => return line[..i].to_string(),
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    line.to_string()
}

fn flush(cur: &mut String, out: &mut Vec<String>) {
    if !cur.is_empty() {
        out.push(std::mem::take(cur));
    }
}

/// Shell words of one line, quotes removed; `;`, `&&`, `||` and `|` end a command and
/// become separate tokens.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => cur.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                flush(&mut cur, &mut out);
                out.push(";".into());
            }
            (None, '|' | '&') if chars.peek() == Some(&c) => {
                chars.next();
                flush(&mut cur, &mut out);
                out.push(";".into());
            }
            (None, '|') => {
                flush(&mut cur, &mut out);
                out.push(";".into());
            }
            (None, c) if c.is_whitespace() => flush(&mut cur, &mut out),
            (None, c) => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn is_binary(w: &str) -> bool {
    w == "latdiff" || w.ends_with("/latdiff") || matches!(w, "$BIN" | "${BIN}" | "$LATDIFF" | "${LATDIFF}")
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with('-')
    })
}

fn is_redirection(w: &str) -> bool {
    w.starts_with('>') || w.starts_with('<') || w.starts_with("2>") || w.starts_with("1>") || w.starts_with("&>")
}

/// latdiff's arguments in one command (between separators), if it runs latdiff.
fn latdiff_args(command: &[String]) -> Option<Vec<String>> {
    let mut rest = command.iter().skip_while(|w| is_assignment(w));
    let first = rest.next()?;
    let args: Vec<&String> = if is_binary(first) {
        rest.collect()
    } else if LAUNCHERS.contains(&first.as_str()) {
        rest.skip_while(|w| !is_binary(w)).skip(1).collect()
    } else {
        return None;
    };
    if !is_binary(first) && !command.iter().any(|w| is_binary(w)) {
        return None;
    }
    let mut out = Vec::new();
    let mut skip_target = false;
    for w in args {
        if skip_target {
            skip_target = false;
        } else if is_redirection(w) {
            // `> file` takes the next word; `>file` and `2>&1` do not.
            skip_target = matches!(w.as_str(), ">" | ">>" | "<" | "2>" | "1>" | "&>");
        } else if w != "…" && w != "..." {
            out.push(w.clone());
        }
    }
    Some(out)
}

fn commands_in(path: &Path) -> Vec<Found> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let mut found = Vec::new();
    for (line, joined) in shell_lines(&text) {
        for command in words(&joined).split(|w| w == ";" || w == "&") {
            if let Some(args) = latdiff_args(command) {
                found.push(Found { place: format!("{name}:{line}"), args });
            }
        }
    }
    found
}

fn is_placeholder(w: &str) -> bool {
    let var = w.strip_prefix("${").and_then(|v| v.strip_suffix('}')).or_else(|| w.strip_prefix('$'));
    if let Some(v) = var {
        return !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    }
    w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The flag's (`--name`) argument in the subcommand path the arguments name so far.
fn flag_arg<'a>(cmd: &'a clap::Command, before: &[String], flag: &str) -> Option<&'a clap::Arg> {
    let mut sc = cmd;
    for w in before {
        if let Some(next) = sc.find_subcommand(w) {
            sc = next;
        }
    }
    let long = flag.strip_prefix("--")?;
    sc.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| cmd.get_arguments().find(|a| a.get_long() == Some(long)))
}

/// Placeholders replaced by a value their flag accepts.
fn concrete(cmd: &clap::Command, args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in args.iter().enumerate() {
        if !is_placeholder(w) {
            out.push(w.clone());
            continue;
        }
        let arg = i.checked_sub(1).and_then(|j| flag_arg(cmd, &out[..j], &args[j]));
        let value = arg
            .and_then(|a| a.get_possible_values().first().map(|v| v.get_name().to_string()))
            .unwrap_or_else(|| "1".to_string());
        out.push(value);
    }
    out
}

/// Parses like `latdiff` does: Ok, or clap's message on one line.
fn parse(args: &[String]) -> Result<(), String> {
    let cmd = latdiff::cli::help::command();
    let argv: Vec<String> = std::iter::once("latdiff".to_string()).chain(concrete(&cmd, args)).collect();
    match cmd.try_get_matches_from(&argv) {
        Ok(mut m) => latdiff::cli::Cli::from_arg_matches_mut(&mut m).map(|_| ()).map_err(|e| e.to_string()),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            Ok(())
        }
        Err(e) => Err(latdiff::cli::help::one_line(&e)),
    }
}

#[test]
fn every_documented_command_line_parses() {
    let mut failures = Vec::new();
    let mut per_file = Vec::new();
    for doc in documents() {
        let found = commands_in(&doc);
        per_file.push((doc.file_name().unwrap().to_string_lossy().to_string(), found.len()));
        for f in found {
            if let Err(e) = parse(&f.args) {
                failures.push(format!("{}: `latdiff {}`: {e}", f.place, f.args.join(" ")));
            }
        }
    }
    eprintln!("latdiff command lines checked per file: {per_file:?}");
    // The extraction itself must keep working: the user guide's quick starts are there.
    let readme = per_file.iter().find(|(n, _)| n == "README.md").map_or(0, |(_, n)| *n);
    assert!(readme >= 10, "only {readme} latdiff command lines found in README.md's shell blocks: {per_file:?}");
    assert!(failures.is_empty(), "documented command lines that latdiff refuses:\n{}", failures.join("\n"));
}

/// Every key of every command (its long flag, or its TOML name as in the key tables) is
/// named in docs/reference.md.
#[test]
fn reference_names_every_key() {
    let reference = std::fs::read_to_string(root().join("docs/reference.md")).expect("docs/reference.md");
    let cmd = latdiff::cli::help::command();
    let mut missing = Vec::new();
    let mut stack: Vec<(String, &clap::Command)> =
        cmd.get_subcommands().map(|s| (s.get_name().to_string(), s)).collect();
    while let Some((path, sc)) = stack.pop() {
        stack.extend(sc.get_subcommands().map(|s| (format!("{path} {}", s.get_name()), s)));
        for a in sc.get_arguments() {
            let (Some(long), id) = (a.get_long(), a.get_id().as_str()) else { continue };
            if matches!(id, "help" | "version" | "device" | "threads") {
                continue;
            }
            if !reference.contains(&format!("--{long}")) && !reference.contains(&format!("`{id}`")) {
                missing.push(format!("latdiff {path} --{long}"));
            }
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "keys missing from docs/reference.md:\n{}", missing.join("\n"));
}

#[test]
fn extraction_handles_launchers_continuations_and_placeholders() {
    let text = "```sh\nmpirun -n 4 --bind-to none latdiff hmc --lattice 8 \\\n  --n-configs $N --out x.h5 # c\n\
                srun \"$BIN\" sample --model m.h5 --sampler SAMPLER > log 2>&1\n\
                X=1 latdiff info FILE | head -1; echo latdiff\n```\n```\nlatdiff hmc --bogus\n```\n";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.md");
    std::fs::write(&p, text).unwrap();
    let found = commands_in(&p);
    let got: Vec<String> = found.iter().map(|f| f.args.join(" ")).collect();
    assert_eq!(
        got,
        ["hmc --lattice 8 --n-configs $N --out x.h5", "sample --model m.h5 --sampler SAMPLER", "info FILE"],
        "{:?}",
        found.iter().map(|f| &f.place).collect::<Vec<_>>()
    );
    assert!(found[0].place.ends_with("t.md:2") && found[2].place.ends_with("t.md:5"));
    for f in &found {
        assert_eq!(parse(&f.args), Ok(()), "{}", f.args.join(" "));
    }
    // A placeholder for an enum flag takes one of its values; a bad flag is refused.
    assert_eq!(parse(&["hmc".into(), "--theory".into(), "$T".into()]), Ok(()));
    assert!(parse(&["hmc".into(), "--n-mdd".into(), "3".into()]).unwrap_err().contains("--n-mdd"));
}
