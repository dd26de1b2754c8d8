//! Every example config in `deploy/examples/` parses and validates.

use std::path::Path;

use replicator_common::Config;

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            Config::from_yaml(&text, Vec::new(), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Ingest sources, inline and from their directory, as `replicator ingest` reads
            // them (docs/ingest.md).
            let config = Config::load(&path, &[]).unwrap();
            let sources = replicator_cli::ingest::sources(&config)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if config.ingest.is_some() {
                assert!(sources.len() >= 3, "{}: {sources:?}", path.display());
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the example configs in {}",
        dir.display()
    );
}

#[test]
fn the_demo_config_is_valid() {
    Config::from_yaml(replicator_cli::demo::DEMO_CONFIG, Vec::new(), &[]).unwrap();
}
