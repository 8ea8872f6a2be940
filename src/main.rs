use clap::Parser;

fn main() {
    // Behave like other Unix tools when the reader of stdout goes away (`race-eval … | head`):
    // end quietly instead of panicking on a broken pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = race_eval::cli::Cli::parse();
    if let Err(e) = race_eval::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
