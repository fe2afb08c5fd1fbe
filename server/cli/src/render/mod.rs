//! Everything `tessera` prints. Commands hand their results to the
//! [`Terminal`] as values ([`operator::Output`], [`client::Output`], or
//! anything serializable for `--json` and `-o json`); the modules here decide
//! how each one reads, and the terminal is the one writer of stdout and stderr.
//!
//! Results go to stdout, so they can be piped; problems and progress go to
//! stderr.

pub mod client;
pub mod operator;

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

/// What a command has to say, as a person reads it.
pub trait Render {
    /// The lines to print, without the final newline.
    fn text(&self) -> String;
    /// Where they go.
    fn stream(&self) -> Stream {
        Stream::Result
    }
}

/// Where a piece of output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout: what the command produced.
    Result,
    /// stderr: what went wrong, or needs the person's attention.
    Problem,
    /// stderr, one line that the next progress line overwrites.
    Progress,
}

/// The process's terminal: stdout and stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

/// A progress line was written and not ended yet: the next output starts
/// on a new line. One per process, as the terminal is.
static PROGRESS_OPEN: AtomicBool = AtomicBool::new(false);

impl Terminal {
    pub fn show(&self, output: &impl Render) {
        let text = output.text();
        let stream = output.stream();
        if stream == Stream::Progress {
            PROGRESS_OPEN.store(true, Ordering::Relaxed);
            eprint!("\r{text}");
            let _ = std::io::stderr().flush();
            return;
        }
        if PROGRESS_OPEN.swap(false, Ordering::Relaxed) {
            eprintln!();
        }
        match stream {
            Stream::Problem => eprintln!("{text}"),
            _ => println!("{text}"),
        }
    }

    /// `value` as indented JSON on stdout.
    pub fn json(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.show(&Text(serde_json::to_string_pretty(value)?, Stream::Result));
        Ok(())
    }

    /// The error that ended the command, with its causes.
    pub fn error(&self, error: &anyhow::Error) {
        self.show(&Text(format!("error: {error:#}"), Stream::Problem));
    }
}

/// Text made already, for a stream.
struct Text(String, Stream);

impl Render for Text {
    fn text(&self) -> String {
        self.0.clone()
    }
    fn stream(&self) -> Stream {
        self.1
    }
}
