//! Generates the two Delta tables `bench/reconcile.sh` compares.
//!
//! ```text
//! gen_reconcile_tables SOURCE TARGET ROWS FILES
//! ```
//!
//! SOURCE gets ROWS rows in FILES commits of one file each: `id` (0..ROWS, the key),
//! `customer` (string), `amount` (f64), `qty` (i64) and `note` (string), pseudo-random but
//! deterministic. TARGET is the same rows except: every id ≡ 0 (mod 1000) is missing
//! (0.1%), and every id ≡ 500 (mod 1000) has a different `amount` (0.1% changed).

use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use replicator_lake::{TableLocation, sample};

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows `start..end`; for the target, tampered as the module docs say.
fn batch(start: i64, end: i64, target: bool) -> RecordBatch {
    let ids: Vec<i64> = (start..end)
        .filter(|i| !(target && i % 1000 == 0))
        .collect();
    let customer: Vec<String> = ids
        .iter()
        .map(|i| format!("customer-{}", mix(*i as u64) % 100_000))
        .collect();
    let amount: Vec<f64> = ids
        .iter()
        .map(|i| {
            let a = (mix(*i as u64 ^ 1) % 1_000_000) as f64 / 100.0;
            if target && i % 1000 == 500 {
                a + 0.01
            } else {
                a
            }
        })
        .collect();
    let qty: Vec<i64> = ids
        .iter()
        .map(|i| (mix(*i as u64 ^ 2) % 100) as i64)
        .collect();
    let note: Vec<String> = ids
        .iter()
        .map(|i| format!("{:012x}", mix(*i as u64 ^ 3) >> 16))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(customer)),
        Arc::new(Float64Array::from(amount)),
        Arc::new(Int64Array::from(qty)),
        Arc::new(StringArray::from(note)),
    ];
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, target, rows, files] = args.as_slice() else {
        eprintln!("usage: gen_reconcile_tables SOURCE TARGET ROWS FILES");
        return ExitCode::from(2);
    };
    let (Ok(rows), Ok(files)) = (rows.parse::<i64>(), files.parse::<i64>()) else {
        eprintln!("ROWS and FILES must be numbers");
        return ExitCode::from(2);
    };
    for (dir, is_target) in [(source, false), (target, true)] {
        let loc = match TableLocation::parse(dir) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let per_file = (rows + files.max(1) - 1) / files.max(1);
        let mut start = 0;
        while start < rows {
            let end = (start + per_file).min(rows);
            let b = batch(start, end, is_target);
            let done = if start == 0 {
                sample::create(&loc, &b, &[]).await
            } else {
                sample::append(&loc, &b).await
            };
            if let Err(e) = done {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            start = end;
        }
    }
    ExitCode::SUCCESS
}
