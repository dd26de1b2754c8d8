//! Generates an estate of many small Delta tables (the fleet and estate benchmarks' input).
//!
//! ```text
//! gen_estate DIR TABLES [ROWS]                  create DIR/s{i % 20}/t{i}: TABLES tables of ROWS rows (10)
//! gen_estate --append DIR TABLES EVERY [ROWS]   append ROWS rows (10) to every EVERY-th table (i % EVERY == 0)
//! ```

use std::process::ExitCode;

use futures::StreamExt;
use replicator_lake::{TableLocation, sample};

fn path(dir: &str, i: usize) -> String {
    format!("{dir}/s{:02}/t{i:05}", i % 20)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let append = args.first().is_some_and(|a| a == "--append");
    let args = &args[usize::from(append)..];
    let num = |i: usize| args.get(i).and_then(|n| n.parse::<usize>().ok());
    let (Some(dir), Some(n)) = (args.first(), num(1)) else {
        eprintln!(
            "usage: gen_estate DIR TABLES [ROWS]\n       gen_estate --append DIR TABLES EVERY [ROWS]"
        );
        return ExitCode::from(2);
    };
    let every = if append {
        num(2).filter(|e| *e > 0)
    } else {
        Some(1)
    };
    let Some(every) = every else {
        eprintln!("gen_estate --append: EVERY must be a positive number");
        return ExitCode::from(2);
    };
    let rows = num(if append { 3 } else { 2 }).unwrap_or(10);
    let made = futures::stream::iter((0..n).step_by(every))
        .map(|i| {
            let path = path(dir, i);
            async move {
                let loc = TableLocation::parse(&path)?;
                if append {
                    // Ids continue after the rows the table already holds (one million per
                    // append is far above what this tool writes).
                    let commits = std::fs::read_dir(format!("{path}/_delta_log"))
                        .map(|d| d.flatten().count())
                        .unwrap_or(0);
                    let start = (i * rows) as i64 + commits as i64 * 1_000_000_000;
                    sample::append(&loc, &sample::orders(start, rows, "eu")).await
                } else {
                    sample::create(&loc, &sample::orders((i * rows) as i64, rows, "eu"), &[]).await
                }
                .map(|_| ())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let done = made.len();
    if let Some(Err(e)) = made.into_iter().find(|r| r.is_err()) {
        eprintln!("gen_estate: {e}");
        return ExitCode::FAILURE;
    }
    if append {
        println!("appended {rows} rows to {done} of {n} tables under {dir}");
    } else {
        println!("{n} tables of {rows} rows under {dir}");
    }
    ExitCode::SUCCESS
}
