//! The last events of a run, printed when a checker fails.

use std::collections::VecDeque;

/// Lines kept.
const TRACE_LINES_MAX: usize = 400;

/// A bounded log of notable events.
#[derive(Debug, Default)]
pub struct Trace {
    lines: VecDeque<String>,
}

impl Trace {
    pub fn note(&mut self, tick: u64, line: impl Into<String>) {
        if self.lines.len() == TRACE_LINES_MAX {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("t={tick:<6} {}", line.into()));
    }

    pub fn render(&self) -> String {
        self.lines.iter().map(|l| format!("  {l}\n")).collect()
    }
}
