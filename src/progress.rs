//! Progress bars over questions, shared by eval, training and downloads.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over questions (hidden when `quiet`; indicatif also hides it when stderr is
/// not a terminal).
pub fn questions(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} questions, {{per_sec}}, ETA {{eta}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
