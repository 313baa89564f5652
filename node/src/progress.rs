//! Progress of the commands that take more than a second or two (`kairan bench`, `kairan audit`,
//! `kairan bench-recovery`, `kairan demo`, `kairan advisory import` of many files): a bar
//! (indicatif) on standard error when it is a terminal, plain lines otherwise — a CI log or a
//! pipe gets one line per step (at most one per tenth of the work for long runs) instead of
//! control characters. Standard output stays for the command's result.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar redrawn in place (standard error is a terminal).
    Bar,
    /// One line per step on standard error.
    Lines,
    /// Nothing (the caller prints its own report, or was asked to be quiet).
    Quiet,
}

impl Mode {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() { Mode::Bar } else { Mode::Lines }
    }
}

/// The progress of one command: `total` steps (0 when unknown), each with a message.
#[derive(Debug)]
pub struct Progress {
    label: String,
    mode: Mode,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    /// The last tenth of the work a plain line was printed for.
    last_tenth: u64,
}

impl Progress {
    /// Progress of `label` with `total` steps (0: unknown), shown as [`Mode::detect`] says.
    pub fn new(label: &str, total: u64) -> Self {
        Self::with_mode(label, total, Mode::detect())
    }

    /// Progress shown in the given mode.
    pub fn with_mode(label: &str, total: u64, mode: Mode) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = if total > 0 { ProgressBar::new(total) } else { ProgressBar::new_spinner() };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let template = if total > 0 {
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { label: label.to_owned(), mode, bar, total, done: 0, started: Instant::now(), last_tenth: 0 }
    }

    /// Steps done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// One step done, described by `message`.
    pub fn step(&mut self, message: &str) {
        self.advance(1, message);
    }

    /// `steps` steps done, the last described by `message`.
    pub fn advance(&mut self, steps: u64, message: &str) {
        self.done += steps;
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(self.done);
                    bar.set_message(message.to_owned());
                }
            }
            Mode::Lines => {
                // Every step of a short run; every tenth of a long one, and the last.
                let tenth = (self.done * 10).checked_div(self.total).unwrap_or(self.done);
                if self.total <= 20 || tenth > self.last_tenth || self.done == self.total {
                    self.last_tenth = tenth;
                    eprintln!("{}", self.line(message));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// A phase of the work begins (no step counted): shown as the bar's message, or a line.
    pub fn phase(&mut self, message: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.set_message(message.to_owned()),
            (None, Mode::Lines) => eprintln!("{}", self.line(message)),
            _ => {}
        }
    }

    /// Prints a line of the command's report on standard output (above the bar, when there is
    /// one, so the two do not tear each other).
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) if bar.is_hidden() => println!("{text}"),
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// Ends the progress with a summary line.
    pub fn finish(self, summary: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.finish_with_message(summary.to_owned()),
            (None, Mode::Lines) => eprintln!("{}", self.line(summary)),
            _ => {}
        }
    }

    fn line(&self, message: &str) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.total {
            0 => format!("{} [{elapsed:>7.1}s] {message}", self.label),
            total => format!("{} [{elapsed:>7.1}s] {}/{total} {message}", self.label, self.done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_step_and_count() {
        let mut progress = Progress::with_mode("import", 3, Mode::Lines);
        progress.step("a.json");
        assert_eq!(progress.done(), 1);
        assert!(progress.line("b.json").starts_with("import ["), "{}", progress.line("b.json"));
        assert!(progress.line("b.json").ends_with("1/3 b.json"));
        let unknown = Progress::with_mode("demo", 0, Mode::Quiet);
        assert!(unknown.line("publishing").ends_with("s] publishing"));
    }

    #[test]
    fn long_runs_print_a_line_per_tenth() {
        let mut progress = Progress::with_mode("bench", 1000, Mode::Lines);
        let mut printed = 0;
        for _ in 0..1000 {
            let before = progress.last_tenth;
            progress.step("sample");
            if progress.last_tenth != before {
                printed += 1;
            }
        }
        assert_eq!(printed, 10, "one line per tenth");
    }
}
