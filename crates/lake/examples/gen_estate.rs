//! Generates an estate of many small Delta tables (the fleet benchmark's input).
//!
//! ```text
//! gen_estate DIR TABLES [ROWS]   create DIR/s{i % 20}/t{i}: TABLES tables of ROWS rows (10)
//! ```

use std::process::ExitCode;

use futures::StreamExt;
use replicator_lake::{TableLocation, sample};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: gen_estate DIR TABLES [ROWS]");
        return ExitCode::from(2);
    };
    let rows = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(10);
    let made = futures::stream::iter(0..n)
        .map(|i| {
            let path = format!("{dir}/s{:02}/t{i:05}", i % 20);
            async move {
                let loc = TableLocation::parse(&path)?;
                sample::create(
                    &loc,
                    &sample::orders(i as i64 * rows as i64, rows, "eu"),
                    &[],
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = made.into_iter().find(|r| r.is_err()) {
        eprintln!("gen_estate: {e}");
        return ExitCode::FAILURE;
    }
    println!("{n} tables of {rows} rows under {dir}");
    ExitCode::SUCCESS
}
