//! `drscreen serve`: verify and warm the model, open the store, then bind and serve.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use drscreen::http::{self, AppState};
use drscreen::service::ScreeningService;

use crate::cli::GlobalArgs;

pub fn run(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let store = crate::cli::store::open_store(&config)?;
    let screener = crate::cli::start_screener(&config)?;
    let model = screener.engine.model();
    tracing::info!(
        model = %model.identity.name, version = %model.identity.version, sha256 = %model.identity.sha256,
        provider = model.provider.ort_name(), warm_up_ms = model.warm_up.as_millis() as u64,
        "model verified and warm"
    );
    let service = ScreeningService::new(screener, store, config.exams);
    let state = AppState {
        service: service.clone(),
        metrics: Arc::new(Default::default()),
        max_body_bytes: config.limits.max_bytes,
        review: config.review.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let dicom = if config.dicom.enabled {
            let handle = tokio::runtime::Handle::current();
            let bound = drscreen::dicom::start(&config.dicom, service.clone(), &handle)
                .with_context(|| format!("cannot start the DICOM listener on {}:{}", config.dicom.bind, config.dicom.port))?;
            Some(bound)
        } else {
            None
        };
        if drscreen::dips::start(&config.dips, service.clone(), &tokio::runtime::Handle::current()).context("cannot start the DIPS integration")? {
            tracing::info!(validation = config.dips.validation, "DIPS integration on");
        }
        // The bound addresses on stdout (HTTP first, DICOM second) let scripts and tests use port 0.
        println!("drscreen listening on http://{addr}");
        match dicom {
            Some(bound) => println!("drscreen dicom listening on {bound} AE {}", config.dicom.ae_title),
            None => println!("drscreen dicom disabled"),
        }
        tracing::info!(%addr, data_dir = %config.data_dir.display(), database = %config.database(), images = %config.objects(), "listening");
        http::serve(listener, state, config.http, Duration::from_secs(config.shutdown_drain_secs)).await?;
        tracing::info!("stopped cleanly");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
