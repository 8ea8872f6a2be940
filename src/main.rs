use clap::Parser;

fn main() {
    let cli = race_eval::cli::Cli::parse();
    if let Err(e) = race_eval::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
