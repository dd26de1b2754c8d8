//! Dataset names as OpenLineage's naming spec gives them for each store
//! (<https://openlineage.io/docs/spec/naming/>), from replicator's location strings.
//!
//! Never an error: a location this module does not know becomes namespace `replicator` and
//! the location itself as the name. Credentials never pass: the user part of a URL
//! (`user:password@`) is dropped, and so are query strings and fragments (an Azure SAS
//! token, a `?password=`). The table in docs/lineage.md lists every form.

use std::path::Path;

/// The namespace of a location no naming rule covers.
pub const FALLBACK_NAMESPACE: &str = "replicator";

/// A dataset's identity: the namespace of its data source and its name within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

impl Dataset {
    fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            namespace: namespace.into(),
            // A location that names only its store (a bucket, a database) is the store's
            // root.
            name: if name.is_empty() { "/".into() } else { name },
        }
    }
}

impl std::fmt::Display for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.namespace, self.name)
    }
}

/// The dataset at `location`: a local path or `file://` URL, `s3://`, `gs://`, `hdfs://`,
/// an Azure location (`abfss://`, `az://`, `azure://`, `wasbs://`, `https://….core.windows
/// .net`), `databricks:https://<host>/<catalog.schema.table>`,
/// `snowflake:<account>[/<db.schema.table>]`, or a `postgres://` / `mysql://` URL whose
/// path is `<database>[/<schema.table>]`.
pub fn dataset(location: &str) -> Dataset {
    dataset_with_account(location, None)
}

/// [`dataset`], with the Azure storage account to use when the location does not name one
/// (`az://container/path` takes it from `azure_storage_account_name`).
pub fn dataset_with_account(location: &str, azure_account: Option<&str>) -> Dataset {
    let location = location.trim();
    if let Some(rest) = strip_prefix_ignore_case(location, "databricks:") {
        return databricks(rest).unwrap_or_else(|| fallback(location));
    }
    if let Some(rest) = strip_prefix_ignore_case(location, "snowflake:") {
        return snowflake(rest).unwrap_or_else(|| fallback(location));
    }
    let Some((scheme, rest)) = split_scheme(location) else {
        return match strip_prefix_ignore_case(location, "file:") {
            // `file:/p` (one slash).
            Some(path) => local(path),
            None if looks_like_scheme(location) => fallback(location),
            None => local(location),
        };
    };
    let rest = cut_query(rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let key = path.trim_matches('/');
    match scheme.as_str() {
        "file" => {
            let host = without_userinfo(authority);
            if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
                local(&format!("/{path}"))
            } else {
                Dataset::new(
                    format!("file://{}", host.to_ascii_lowercase()),
                    format!("/{key}"),
                )
            }
        }
        "s3" | "s3a" | "s3n" => Dataset::new(format!("s3://{}", without_userinfo(authority)), key),
        "gs" | "gcs" => Dataset::new(format!("gs://{}", without_userinfo(authority)), key),
        "hdfs" => Dataset::new(
            format!(
                "hdfs://{}",
                without_userinfo(authority).to_ascii_lowercase()
            ),
            format!("/{key}"),
        ),
        "abfss" | "abfs" | "wasbs" | "wasb" => match authority.split_once('@') {
            Some((container, host)) => azure(container, account_of(host), key),
            None => azure(authority, azure_account, key),
        },
        "az" | "adl" | "azure" => {
            let host = without_userinfo(authority);
            if is_azure_host(host) {
                let (container, key) = key.split_once('/').unwrap_or((key, ""));
                azure(container, account_of(host), key)
            } else {
                azure(host, azure_account, key)
            }
        }
        "https" | "http" if is_azure_host(without_userinfo(authority)) => {
            let (container, key) = key.split_once('/').unwrap_or((key, ""));
            azure(container, account_of(without_userinfo(authority)), key)
        }
        "postgres" | "postgresql" => database("postgres", 5432, authority, key),
        "mysql" | "mariadb" => database("mysql", 3306, authority, key),
        _ => fallback(location),
    }
}

/// The table `table` (`schema.table`, `DB.SCHEMA.TABLE`) of the database or account at
/// `location` (`postgres://host:5432/db`, `snowflake:ACCOUNT`,
/// `databricks:https://host`): `location` + `/` + `table`, named by [`dataset`].
pub fn table_dataset(location: &str, table: &str) -> Dataset {
    let base = cut_query(location.trim());
    let base = base.strip_suffix('/').unwrap_or(base);
    dataset(&format!("{base}/{}", table.trim_matches('/')))
}

/// Every Azure form becomes ADLS Gen2's `abfss://{container}@{account}.dfs.core.windows.net`
/// (the form Databricks and Spark name Delta tables with, so their lineage meets ours).
fn azure(container: &str, account: Option<&str>, key: &str) -> Dataset {
    let container = without_userinfo(container);
    let namespace = match account.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => format!(
            "abfss://{container}@{}.dfs.core.windows.net",
            a.to_ascii_lowercase()
        ),
        // Without the account the container is all there is to name.
        None => format!("abfss://{container}"),
    };
    Dataset::new(namespace, key.trim_matches('/'))
}

/// `account.dfs.core.windows.net` → `account`.
fn account_of(host: &str) -> Option<&str> {
    host.split('.').next().filter(|a| !a.is_empty())
}

fn is_azure_host(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h.ends_with(".blob.core.windows.net") || h.ends_with(".dfs.core.windows.net")
}

/// `postgres://{host}:{port}` + `{database}.{schema}.{table}`, the port filled in.
fn database(scheme: &str, default_port: u16, authority: &str, path: &str) -> Dataset {
    let host_port = without_userinfo(authority).to_ascii_lowercase();
    let has_port = match host_port.strip_prefix('[') {
        // `[::1]:5432`
        Some(v6) => v6.split_once(']').is_some_and(|(_, p)| p.starts_with(':')),
        None => host_port.contains(':'),
    };
    let namespace = if has_port {
        format!("{scheme}://{host_port}")
    } else {
        format!("{scheme}://{host_port}:{default_port}")
    };
    Dataset::new(namespace, dotted(path))
}

/// `databricks:https://<host>/<catalog.schema.table>` → `unitycatalog://<host>` and
/// `catalog.schema.table` (the spec's Unity Catalog row); the default port is dropped.
fn databricks(rest: &str) -> Option<Dataset> {
    let (scheme, url) = split_scheme(rest).unwrap_or_else(|| ("https".into(), rest));
    let url = cut_query(url);
    let (authority, table) = url.split_once('/').unwrap_or((url, ""));
    let host = without_userinfo(authority).to_ascii_lowercase();
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    Some(Dataset::new(
        format!("unitycatalog://{host}"),
        table.trim_matches('/'),
    ))
}

/// `snowflake:<account>[/<db.schema.table>]` → `snowflake://<account>` (lower case, as the
/// spec's `{organization name}-{account name}` or account-locator forms are written) and
/// `db.schema.table`.
fn snowflake(rest: &str) -> Option<Dataset> {
    let rest = cut_query(rest.trim_start_matches('/'));
    let (account, table) = rest.split_once('/').unwrap_or((rest, ""));
    let account = without_userinfo(account).to_ascii_lowercase();
    let account = account
        .strip_suffix(".snowflakecomputing.com")
        .unwrap_or(&account);
    if account.is_empty() {
        return None;
    }
    Some(Dataset::new(
        format!("snowflake://{account}"),
        dotted(table),
    ))
}

/// A local path: namespace `file`, the absolute path as the name.
fn local(path: &str) -> Dataset {
    let p = Path::new(path);
    let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let s = absolute.to_string_lossy();
    let s = s.trim_end_matches('/');
    Dataset::new("file", if s.is_empty() { "/" } else { s })
}

fn fallback(location: &str) -> Dataset {
    let clean = match split_scheme(location) {
        Some((_, rest)) => {
            let scheme_len = location.len() - rest.len();
            let rest = cut_query(rest);
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            format!(
                "{}{}{path}",
                &location[..scheme_len],
                without_userinfo(authority)
            )
        }
        None => cut_query(location).to_owned(),
    };
    Dataset::new(FALLBACK_NAMESPACE, clean)
}

/// Path segments joined with dots: `db/public.orders` → `db.public.orders`.
fn dotted(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// `scheme://rest` → (`scheme` in lower case, `rest`).
fn split_scheme(location: &str) -> Option<(String, &str)> {
    let (scheme, rest) = location.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), rest))
}

/// `mailto:x`, `sqlite:state.db`: a scheme without `//`, not a path.
fn looks_like_scheme(location: &str) -> bool {
    location.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !scheme.contains('/')
    })
}

/// Everything before `?` or `#`.
fn cut_query(s: &str) -> &str {
    s.split(['?', '#']).next().unwrap_or("")
}

/// `user:password@host` → `host`.
fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(location: &str, namespace: &str, name: &str) {
        assert_eq!(
            dataset(location),
            Dataset {
                namespace: namespace.into(),
                name: name.into()
            },
            "{location}"
        );
    }

    #[test]
    fn local_paths_and_file_urls() {
        check(
            "/lake/source/sales/orders",
            "file",
            "/lake/source/sales/orders",
        );
        check(
            "/lake/source/sales/orders/",
            "file",
            "/lake/source/sales/orders",
        );
        check("file:///lake/t", "file", "/lake/t");
        check("file:/lake/t", "file", "/lake/t");
        check("file://localhost/lake/t", "file", "/lake/t");
        check("file://nas01/lake/t", "file://nas01", "/lake/t");
        // A relative path is made absolute against the working directory.
        let cwd = std::env::current_dir().unwrap();
        check(
            "lake/t",
            "file",
            &format!("{}/lake/t", cwd.to_string_lossy().trim_end_matches('/')),
        );
        check("/", "file", "/");
    }

    #[test]
    fn object_stores() {
        check("s3://bucket/tables/orders", "s3://bucket", "tables/orders");
        check(
            "s3a://bucket/tables/orders/",
            "s3://bucket",
            "tables/orders",
        );
        check("s3n://bucket/k", "s3://bucket", "k");
        check("s3://bucket", "s3://bucket", "/");
        check("gs://bkt/p/q", "gs://bkt", "p/q");
        check("gcs://bkt/p", "gs://bkt", "p");
        check(
            "hdfs://nn:8020/warehouse/t",
            "hdfs://nn:8020",
            "/warehouse/t",
        );
    }

    #[test]
    fn azure_forms_become_abfss() {
        let ns = "abfss://lake@acct.dfs.core.windows.net";
        check(
            "abfss://lake@acct.dfs.core.windows.net/sales/orders",
            ns,
            "sales/orders",
        );
        check(
            "abfs://lake@acct.dfs.core.windows.net/sales/orders",
            ns,
            "sales/orders",
        );
        check(
            "wasbs://lake@acct.blob.core.windows.net/sales/orders",
            ns,
            "sales/orders",
        );
        check(
            "azure://acct.blob.core.windows.net/lake/sales/orders",
            ns,
            "sales/orders",
        );
        check(
            "https://acct.dfs.core.windows.net/lake/sales/orders",
            ns,
            "sales/orders",
        );
        check(
            "https://ACCT.blob.core.windows.net/lake/sales/orders?sv=2024&sig=SECRET",
            ns,
            "sales/orders",
        );
        // The account from the storage options when the URL has none.
        assert_eq!(
            dataset_with_account("az://lake/sales/orders", Some("Acct")),
            Dataset {
                namespace: ns.into(),
                name: "sales/orders".into()
            }
        );
        assert_eq!(
            dataset_with_account("abfss://lake/sales/orders", Some("acct")).namespace,
            ns
        );
        // Without it, the container alone.
        check("az://lake/sales/orders", "abfss://lake", "sales/orders");
        check("adl://lake/x", "abfss://lake", "x");
    }

    #[test]
    fn databricks_tables_are_unity_catalog_names() {
        check(
            "databricks:https://adb-123.4.azuredatabricks.net/main.sales.orders",
            "unitycatalog://adb-123.4.azuredatabricks.net",
            "main.sales.orders",
        );
        check(
            "databricks:https://H.example:443/c.s.t",
            "unitycatalog://h.example",
            "c.s.t",
        );
        check(
            "databricks:http://127.0.0.1:9/c.s.t",
            "unitycatalog://127.0.0.1:9",
            "c.s.t",
        );
        assert_eq!(
            table_dataset("databricks:https://h.example/", "c.s.t"),
            dataset("databricks:https://h.example/c.s.t")
        );
    }

    #[test]
    fn snowflake_accounts() {
        check(
            "snowflake:MYORG-MYACCOUNT",
            "snowflake://myorg-myaccount",
            "/",
        );
        check(
            "snowflake:MYORG-MYACCOUNT/DB.PUBLIC.ORDERS",
            "snowflake://myorg-myaccount",
            "DB.PUBLIC.ORDERS",
        );
        check(
            "snowflake://xy12345.us-east-1.aws.snowflakecomputing.com/DB/PUBLIC.ORDERS",
            "snowflake://xy12345.us-east-1.aws",
            "DB.PUBLIC.ORDERS",
        );
        assert_eq!(
            table_dataset("snowflake:MYORG-MYACCOUNT", "DB.PUBLIC.ORDERS"),
            dataset("snowflake:MYORG-MYACCOUNT/DB.PUBLIC.ORDERS")
        );
    }

    #[test]
    fn databases_never_carry_credentials() {
        check(
            "postgres://replicator:hunter2@DB.example:6432/shop/public.orders?sslmode=require",
            "postgres://db.example:6432",
            "shop.public.orders",
        );
        check("postgresql://db/shop", "postgres://db:5432", "shop");
        check(
            "mysql://u:p@db/shop/orders",
            "mysql://db:3306",
            "shop.orders",
        );
        check(
            "mariadb://db:3307/shop/orders",
            "mysql://db:3307",
            "shop.orders",
        );
        check("postgres://u:p@[::1]/shop", "postgres://[::1]:5432", "shop");
        assert_eq!(
            table_dataset(
                "postgres://u:hunter2@db:5432/shop?sslmode=require",
                "public.orders"
            ),
            dataset("postgres://db:5432/shop/public.orders")
        );
    }

    #[test]
    fn anything_else_falls_back_without_secrets() {
        check("sqlite://state.db", FALLBACK_NAMESPACE, "sqlite://state.db");
        check(
            "ftp://user:hunter2@files.example/in/x.csv?token=abc",
            FALLBACK_NAMESPACE,
            "ftp://files.example/in/x.csv",
        );
        check("kafka:topic", FALLBACK_NAMESPACE, "kafka:topic");
        check("databricks:", FALLBACK_NAMESPACE, "databricks:");
        check("snowflake:", FALLBACK_NAMESPACE, "snowflake:");
        for l in [
            "ftp://user:hunter2@files.example/x",
            "postgres://user:hunter2@db/x",
            "https://acct.blob.core.windows.net/c/p?sig=hunter2",
            "s3://u:hunter2@bucket/k",
        ] {
            let d = dataset(l);
            assert!(
                !d.namespace.contains("hunter2") && !d.name.contains("hunter2"),
                "{l}: {d}"
            );
        }
    }
}
