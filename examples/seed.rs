//! Seeds a container for demos and benchmarks, through the crate's own `AzureStore`.
//!
//! ```text
//! cargo run --release --example seed -- --endpoint http://127.0.0.1:10000/devstoreaccount1 \
//!     --container demo [--sample] [--list [PREFIX]] [--sas-url]
//! ```
//!
//! - always: creates the container if it does not exist;
//! - `--sample`: uploads a small sample dataset (CSV files, a directory marker, a binary file,
//!   a name with spaces and non-ASCII characters);
//! - `--list [PREFIX]`: prints `SIZE NAME` for every blob under PREFIX (all blobs without one);
//! - `--sas-url`: prints a container SAS URL (for rclone's `sas_url`, curl, benchmarks).
//!
//! Progress goes to stderr; stdout carries only the listing and the SAS URL, so
//! `url=$(cargo run -q --example seed -- --container c --sas-url)` works.

use std::time::Duration;

use anyhow::{Context, Result};
use azblobfs::store::azure::AzureStore;
use azblobfs::store::{BlobStore, Credentials, StoreConfig, WriteCondition};
use bytes::Bytes;
use clap::Parser;

/// The storage emulator's well-known development account key (public, not a secret).
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Parser, Debug)]
#[command(about = "Create and seed a blob container (Azurite by default)")]
struct Args {
    /// Blob service URL, without the container.
    #[arg(
        long,
        env = "AZBLOBFS_TEST_ENDPOINT",
        default_value = "http://127.0.0.1:10000/devstoreaccount1"
    )]
    endpoint: String,
    /// Container name (created if missing).
    #[arg(long)]
    container: String,
    /// Storage account name.
    #[arg(long, default_value = "devstoreaccount1")]
    account: String,
    /// Storage account key (defaults to the emulator's well-known key).
    #[arg(long, env = "AZBLOBFS_SEED_KEY", default_value = EMULATOR_KEY, hide_default_value = true)]
    key: String,
    /// Upload the sample dataset.
    #[arg(long)]
    sample: bool,
    /// List blobs (size and name) under PREFIX, or all blobs.
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "")]
    list: Option<String>,
    /// Print a container SAS URL (read, write, list, delete).
    #[arg(long)]
    sas_url: bool,
    /// Validity of the SAS URL, in hours.
    #[arg(long, default_value_t = 24)]
    sas_hours: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("seed: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let config = StoreConfig {
        endpoint: args.endpoint.trim_end_matches('/').to_owned(),
        container: args.container.clone(),
        credentials: Credentials::AccountKey {
            account: args.account.clone(),
            key: args.key.clone(),
        },
    };
    let store = AzureStore::new(&config).context("cannot configure the store")?;

    store.create_container().await.with_context(|| {
        format!(
            "cannot create container {} at {}",
            args.container, args.endpoint
        )
    })?;
    eprintln!("container {} ready at {}", args.container, args.endpoint);

    if args.sample {
        upload_sample(&store).await?;
    }
    if let Some(prefix) = &args.list {
        list(&store, prefix).await?;
    }
    if args.sas_url {
        let url = store
            .container_sas_url(Duration::from_secs(args.sas_hours * 3600))
            .context("cannot make a SAS URL")?;
        println!("{url}");
    }
    Ok(())
}

/// The sample dataset: (blob name, content). Directory markers are added separately.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("README.txt".into(), README.as_bytes().to_vec()),
        ("data/sales.csv".into(), sales_csv(2024, 1, 48, 7)),
        ("data/2024/january.csv".into(), sales_csv(2024, 1, 10, 3)),
        ("data/2024/february.csv".into(), sales_csv(2024, 2, 9, 3)),
        ("images/pixel.png".into(), PIXEL_PNG.to_vec()),
        (
            "notes/café menu #1.txt".into(),
            CAFE_MENU.as_bytes().to_vec(),
        ),
    ]
}

async fn upload_sample(store: &AzureStore) -> Result<()> {
    store
        .put_dir_marker("images")
        .await
        .context("cannot create directory marker images")?;
    eprintln!("  dir   images/");
    for (name, body) in sample_files() {
        let size = body.len();
        store
            .put(&name, Bytes::from(body), &WriteCondition::None)
            .await
            .with_context(|| format!("cannot upload {name}"))?;
        eprintln!("  {size:>5} {name}");
    }
    Ok(())
}

/// Prints `SIZE NAME` for every blob under `prefix` (directory markers end with `/`).
async fn list(store: &AzureStore, prefix: &str) -> Result<()> {
    let mut marker = None;
    loop {
        let page = store
            .list(prefix, None, marker, 5000)
            .await
            .with_context(|| format!("cannot list {prefix:?}"))?;
        for blob in &page.blobs {
            let suffix = if blob.is_dir_marker { "/" } else { "" };
            println!("{:>10} {}{suffix}", blob.size, blob.name);
        }
        marker = page.next_marker;
        if marker.is_none() {
            return Ok(());
        }
    }
}

/// `rows` sales records starting on the first of `month`, one every `step_days` days.
/// Deterministic, so the demo's totals are the same on every run.
fn sales_csv(year: i32, month: u8, rows: u32, step_days: i64) -> Vec<u8> {
    const REGIONS: [&str; 4] = ["North", "South", "East", "West"];
    const PRODUCTS: [(&str, &str); 3] =
        [("widget", "2.50"), ("gadget", "12.00"), ("gizmo", "7.25")];
    let month = time::Month::try_from(month).expect("valid month");
    let start = time::Date::from_calendar_date(year, month, 1).expect("valid date");
    let mut out = String::from("date,region,product,units,price\n");
    for i in 0..rows {
        let date = start + time::Duration::days(i64::from(i) * step_days);
        let region = REGIONS[(i as usize * 3 + month as usize) % REGIONS.len()];
        let (product, price) = PRODUCTS[(i as usize + month as usize) % PRODUCTS.len()];
        let units = 5 + (i * 37 + i * i * 11 + u32::from(month as u8) * 13) % 41;
        out.push_str(&format!(
            "{:04}-{:02}-{:02},{region},{product},{units},{price}\n",
            date.year(),
            date.month() as u8,
            date.day()
        ));
    }
    out.into_bytes()
}

const README: &str = "\
Sample dataset for azblobfs

data/sales.csv          sales records: date,region,product,units,price
data/2024/*.csv         the same kind of records, one file per month
images/pixel.png        a tiny binary file (a 2x2 PNG)
notes/café menu #1.txt  a name with spaces, non-ASCII and '#'

Every file here is a blob in an Azure Blob Storage container; directories are
blob-name prefixes (and 'images' also has a directory marker blob).
";

const CAFE_MENU: &str = "\
Café menu #1
- espresso    2.20
- crème brûlée 4.50
- thé vert    2.80
";

/// A valid 2x2 RGB PNG.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x12, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xc0,
    0x00, 0xc2, 0x0c, 0xff, 0x81, 0x00, 0x00, 0x1f, 0xee, 0x05, 0xfb, 0xf1, 0xab, 0xba, 0x77, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
