//! Teach delta-rs to read tables on the object stores `TableLocation` reaches.
//!
//! delta-rs resolves a table URL's scheme through two registries: one that builds the object
//! store and one that builds the log store. Out of the box they only know `file://` and
//! `memory://` (the cloud crates `deltalake-aws`/`deltalake-azure` add more, with a large
//! dependency tree and a DynamoDB lock client we do not need: our commits are put-if-absent).
//! We register the same stores `TableLocation` uses, so delta-rs and the clone share one
//! connection pool per bucket, and delta-rs's default log store on top.

use std::sync::{Arc, Mutex, OnceLock};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path};
use url::Url;

struct Stores;

impl ObjectStoreFactory for Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        // The options `TableLocation` handed to the builder (its root's): the store cache
        // then returns the store configured with them, not another root's in a bucket of the
        // same name.
        let options: std::collections::BTreeMap<String, String> =
            config.raw().map(|(k, v)| (k.clone(), v.clone())).collect();
        let loc = crate::TableLocation::parse_with(url.as_str(), Arc::new(options))
            .map_err(|e| DeltaTableError::InvalidTableLocation(e.to_string()))?;
        Ok((loc.object_store().clone(), loc.prefix().clone()))
    }
}

struct Logs;

impl LogStoreFactory for Logs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Register `scheme` with delta-rs (once per scheme).
pub(crate) fn register(scheme: &str) {
    static DONE: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(Default::default)
        .lock()
        .expect("registry lock");
    if !done.insert(scheme.to_owned()) {
        return;
    }
    if let Ok(key) = Url::parse(&format!("{scheme}://")) {
        object_store_factories().insert(key.clone(), Arc::new(Stores));
        logstore_factories().insert(key, Arc::new(Logs));
    }
}
