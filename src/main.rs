//! The binary edge: parse the command line, run it, map errors to exit codes.

use clap::Parser;
use happyhorse::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = cli::run(cli) {
        // Job failures were already reported one by one; other errors are reported here.
        if !e.reported {
            eprintln!("happyhorse: {:#}", e.error);
        }
        std::process::exit(e.code);
    }
}
