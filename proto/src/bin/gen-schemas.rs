//! Writes the JSON Schema of every message into `proto/schemas/`.
fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    std::fs::create_dir_all(&dir)?;
    for (name, schema) in replicator_proto::all_schemas() {
        let text = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
        std::fs::write(dir.join(format!("{name}.json")), text)?;
        println!("wrote schemas/{name}.json");
    }
    Ok(())
}
