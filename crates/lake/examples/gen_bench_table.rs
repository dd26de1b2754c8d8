//! Generates the Delta table `bench/clone.sh` clones.
//!
//! ```text
//! gen_bench_table DIR FILES ROWS_PER_FILE   create DIR: FILES commits of one data file each
//! gen_bench_table --append DIR ROWS         append one commit of ROWS rows to DIR
//! ```
//!
//! Each commit writes one parquet file (the writer's target file size is far above what a
//! commit holds). The columns are pseudo-random (xorshift64*, seeded deterministically) so
//! parquet cannot compress them much: about 40 bytes per row on disk.

use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use replicator_lake::{TableLocation, sample};

/// xorshift64*: small, fast, deterministic and good enough to defeat compression.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Never zero (xorshift's fixed point); spread small seeds.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Rows `start..start + n`: `id` (sequential), `key` (random i64), `value` (random f64),
/// `tag` (16 random hex characters).
fn batch(start: i64, n: usize) -> RecordBatch {
    let mut rng = Rng::new(start as u64);
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let keys: Vec<i64> = (0..n).map(|_| rng.next() as i64).collect();
    let values: Vec<f64> = (0..n)
        .map(|_| (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * 1e6)
        .collect();
    let tags: Vec<String> = (0..n).map(|_| format!("{:016x}", rng.next())).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("key", DataType::Int64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int64Array::from(keys)),
        Arc::new(Float64Array::from(values)),
        Arc::new(StringArray::from(tags)),
    ];
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: gen_bench_table DIR FILES ROWS_PER_FILE\n       gen_bench_table --append DIR ROWS"
    );
    ExitCode::from(2)
}

fn num(s: &str) -> Option<usize> {
    s.parse().ok().filter(|n| *n > 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--append", dir, rows] => match num(rows) {
            Some(rows) => append(dir, rows).await,
            None => return usage(),
        },
        [dir, files, rows] if !dir.starts_with('-') => match (num(files), num(rows)) {
            (Some(files), Some(rows)) => create(dir, files, rows).await,
            _ => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_bench_table: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn create(dir: &str, files: usize, rows: usize) -> Result<(), replicator_lake::LakeError> {
    let loc = TableLocation::parse(dir)?;
    let mut version = sample::create(&loc, &batch(0, rows), &[]).await?;
    for i in 1..files {
        version = sample::append(&loc, &batch((i * rows) as i64, rows)).await?;
        if i % 20 == 0 {
            eprintln!("gen_bench_table: {i}/{files} files");
        }
    }
    println!("created {dir}: {files} files of {rows} rows, version {version}");
    Ok(())
}

async fn append(dir: &str, rows: usize) -> Result<(), replicator_lake::LakeError> {
    let loc = TableLocation::parse(dir)?;
    // Ids (and so the data) continue after every row the table could already hold: one
    // billion per existing log entry is far above any commit this tool writes.
    let commits = std::fs::read_dir(std::path::Path::new(dir).join("_delta_log"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0);
    let version = sample::append(&loc, &batch(commits as i64 * 1_000_000_000, rows)).await?;
    println!("appended {rows} rows to {dir}: version {version}");
    Ok(())
}
