//! The binary edge: parse the command line, run it, map errors to exit codes.

use clap::Parser;
use happyhorse::cli::{self, Cli};

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = cli::run(cli) {
        // Job failures were already reported one by one; other errors are reported here.
        if !e.reported {
            eprintln!("happyhorse: {:#}", e.error);
        }
        std::process::exit(e.code);
    }
}

/// candle allocates a fresh buffer for every result; glibc serves large ones with mmap (its
/// threshold adapts up to 32 MB) and gives them back on free, so every operation page-faults
/// its output in anew. Training Nano spent more time in the kernel than in the model that
/// way (2.0 M page faults in 10 steps, 16.3 s; with these settings 0.32 M, 8.4 s). Keep freed
/// memory in the heap for reuse instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called first thing in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
