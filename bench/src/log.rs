//! `plasma bench log`: the log path measured against the broker's own ceilings, with the same
//! client library and settings against the same broker in one run — relay vs raw produce,
//! log-fed projection vs raw consume — and the end-to-end lag at a steady rate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use clap::Args;
use cqrs_es::Aggregate as _;
use plasma_commands::{CommandHandler, EventStore, StoreConfig};
use plasma_domain::brand::{Brand, Mention};
use plasma_domain::ids::BrandId;
use plasma_domain::{AggregateId, Context as BoundedContext};
use plasma_log::{
    EventCodec, LogConfig, LogSubscription, RegistryAdmin, Relay, RelayOptions, SubscriptionOptions,
};
use plasma_projections::checkpoint;
use plasma_projections::{
    projection_named, ProjectionRunner, ReadStore, ReadStoreConfig, RunnerOptions, Step,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use uuid::Uuid;

use crate::ingest::{context, fresh_database, generate_mentions, register_brand, services};

/// Records per transaction of the log-fed projection, as `plasma project` runs it.
const PROJECT_BATCH: usize = 5000;

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Mentions pushed through the log for the throughput figures.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Events per second for the end-to-end lag measurement.
    #[arg(long, default_value_t = 1000)]
    lag_rate: usize,
    /// How long to measure the end-to-end lag.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    lag_duration: Duration,
    /// A PostgreSQL URL whose user may create databases (the bench creates a fresh one).
    #[arg(long, env = "PLASMA_BENCH_DATABASE_URL")]
    database_url: String,
    /// Bootstrap brokers.
    #[arg(long, env = "PLASMA_KAFKA_BROKERS")]
    brokers: String,
    /// Schema registry URL.
    #[arg(long, env = "PLASMA_SCHEMA_REGISTRY_URL")]
    registry_url: String,
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

pub async fn log(args: LogBenchArgs) -> Result<()> {
    if args.events == 0 || args.partitions <= 0 || args.lag_rate == 0 {
        bail!("--events, --partitions and --lag-rate must be positive");
    }
    // Fresh topics and subjects per run, so runs never see each other's records.
    let prefix = format!("bench{}", Utc::now().timestamp_micros());
    let config = LogConfig {
        brokers: args.brokers.clone(),
        registry_url: args.registry_url.clone(),
        topic_prefix: prefix.clone(),
    };
    let raw_topic = format!("{prefix}.raw");
    create_topics(&config, &raw_topic, args.partitions).await?;
    RegistryAdmin::new(&config.registry_url)?
        .register_all(&prefix)
        .await?;

    let url = fresh_database(&args.database_url, "plasma_log_bench").await?;
    let store = EventStore::open(&StoreConfig::Postgres {
        url: url.clone(),
        max_connections: 8,
    })
    .await?;
    let read = ReadStore::open(&ReadStoreConfig::beside(&store, Default::default())).await?;

    // The events, committed with no relay running: none is published yet.
    let handler = CommandHandler::new(store.clone());
    let brand = BrandId::from_uuid(Uuid::now_v7());
    handler
        .execute::<Brand>(&context()?, brand.as_uuid(), register_brand(), &())
        .await?;
    let mentions = generate_mentions(args.events);
    for chunk in mentions.chunks(10_000) {
        handler
            .ingest_mentions(&context()?, brand, chunk.to_vec(), Utc::now(), &services())
            .await?;
    }
    let head = store.head().await?;
    let total = usize::try_from(head)?;
    eprintln!(
        "{total} events committed; topics {prefix}.*, {} partitions",
        args.partitions
    );

    // 1. The broker's produce ceiling: the same records (encoded beforehand), the same
    //    producer settings, the same broker, nothing else in the way.
    let codec = EventCodec::new(&config.registry_url, &prefix)?;
    let events = store.read_all(0, head).await?;
    let mut records = Vec::with_capacity(events.len());
    for event in &events {
        let record = codec.encode(event).await?;
        records.push((record, plasma_log::relay::headers(event, None)));
    }
    let producer: FutureProducer = config.producer().create()?;
    let started = Instant::now();
    let mut deliveries = VecDeque::with_capacity(records.len());
    for (record, headers) in &records {
        loop {
            let message = FutureRecord::to(&raw_topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers.clone());
            match rdkafka::producer::Producer::in_flight_count(&producer) {
                n if n > 100_000 => {
                    if let Some(d) = deliveries.pop_front() {
                        wait_delivery(d).await?;
                    }
                    continue;
                }
                _ => {}
            }
            match producer.send_result(message) {
                Ok(d) => {
                    deliveries.push_back(d);
                    break;
                }
                Err((rdkafka::error::KafkaError::MessageProduction(_), _)) => {
                    if let Some(d) = deliveries.pop_front() {
                        wait_delivery(d).await?;
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    while let Some(d) = deliveries.pop_front() {
        wait_delivery(d).await?;
    }
    let raw_produce = started.elapsed();
    eprintln!("raw produce: {total} records in {raw_produce:.2?}");

    // 2. The relay: the store to the topics, encoding included, until all are acknowledged.
    let (stop_relay, stop) = watch::channel(false);
    let relay = Relay::new(&store, config.clone(), RelayOptions::default())?;
    let started = Instant::now();
    let relay_task = tokio::spawn(relay.run(stop));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let published = store.published_position().await?;
        if published >= head {
            break;
        }
        if Instant::now() > deadline {
            bail!("the relay is stuck at {published} of {head}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relay_elapsed = started.elapsed();
    eprintln!("relay: {total} events in {relay_elapsed:.2?}");

    // 3. The broker's consume ceiling: a consumer-group member with the workers' settings
    //    reading the brand topic to its end, doing nothing with the records.
    let brand_topic = BoundedContext::Brand.topic(&prefix);
    let brand_records = events
        .iter()
        .filter(|e| e.aggregate_type == Brand::TYPE || e.aggregate_type == Mention::TYPE)
        .count();
    let consumer: StreamConsumer = config
        .consumer(Some(&format!("{prefix}.raw-consume")))
        .create()?;
    consumer.subscribe(&[brand_topic.as_str()])?;
    let started = Instant::now();
    let mut seen = 0usize;
    let mut first_record = None;
    while seen < brand_records {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("the raw consumer stalled")??;
        first_record.get_or_insert_with(|| started.elapsed());
        seen += 1;
    }
    let raw_consume_first = first_record.unwrap_or_default();
    eprintln!("raw consume: first record after {raw_consume_first:.2?} (joining the group)");
    let raw_consume = started.elapsed();
    drop(consumer);
    eprintln!("raw consume: {brand_records} records in {raw_consume:.2?}");

    // 4. A log-fed projection (mentions) from offset 0 to the end, into PostgreSQL: timed, like
    //    the raw consumer, from the moment it has subscribed until every record is applied
    //    (its stored offsets cover the topic).
    let projection = projection_named("mentions")?;
    let subscription = LogSubscription::start(
        read.clone(),
        store.clone(),
        projection.name(),
        projection.contexts(),
        &config,
        SubscriptionOptions::default(),
    )
    .await?;
    let options = RunnerOptions {
        batch_size: PROJECT_BATCH,
        ..RunnerOptions::default()
    };
    let mut worker =
        ProjectionRunner::start(read.clone(), projection.clone(), subscription, options).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let end_offsets = i64::try_from(brand_records)?;
    let mut first_batch = None;
    let mut assigned_after = None;
    loop {
        let step = worker.step().await?;
        if assigned_after.is_none() && !worker.subscription().assignment().is_empty() {
            assigned_after = Some(started.elapsed());
        }
        if let Step::Applied(_) = step {
            first_batch.get_or_insert_with(|| started.elapsed());
        }
        let consumed: i64 = checkpoint::next_offsets(&read, projection.name())
            .await?
            .iter()
            .map(|(_, next)| next)
            .sum();
        if consumed >= end_offsets {
            break;
        }
        if Instant::now() > deadline {
            bail!("the projection did not catch up within 10 minutes");
        }
    }
    let projection = started.elapsed();
    let projection_first = first_batch.unwrap_or_default();
    eprintln!(
        "projection: {brand_records} records in {projection:.2?}; partitions assigned after {:.2?}, first batch applied after {projection_first:.2?}",
        assigned_after.unwrap_or_default()
    );

    // 5. End-to-end lag at a steady rate: command accepted → visible to a min_position query
    //    (the mentions read model's position covers it), with the relay and worker running.
    let (stop_worker, worker_stop) = watch::channel(false);
    let worker_task = tokio::spawn(worker.run(worker_stop));
    let lags = steady_lag(&handler, brand, &read, args.lag_rate, args.lag_duration).await?;
    let _ = stop_worker.send(true);
    let _ = stop_relay.send(true);
    let _ = worker_task.await;
    let _ = relay_task.await;

    let raw_produce_rate = rate(total, raw_produce);
    let relay_rate = rate(total, relay_elapsed);
    let raw_consume_rate = rate(brand_records, raw_consume);
    let projection_rate = rate(brand_records, projection);
    // Both include joining the consumer group, which takes tansu most of two seconds; the
    // steady rates count from the first record (raw) or the first applied batch (projection).
    let first_batch_records = PROJECT_BATCH.min(brand_records);
    let raw_steady = rate(
        brand_records.saturating_sub(1),
        raw_consume.saturating_sub(raw_consume_first),
    );
    let projection_steady = rate(
        brand_records.saturating_sub(first_batch_records),
        projection.saturating_sub(projection_first),
    );
    println!("| measurement | events | events/s | vs ceiling |");
    println!("|---|---:|---:|---:|");
    println!("| raw produce (same producer settings, pre-encoded) | {total} | {raw_produce_rate:.0} | ceiling |");
    println!(
        "| relay (event store → topics, Avro, acks=all) | {total} | {relay_rate:.0} | {:.0}% |",
        100.0 * relay_rate / raw_produce_rate
    );
    println!("| raw consume (same consumer settings, group member) | {brand_records} | {raw_consume_rate:.0} | ceiling |");
    println!(
        "| projection `mentions` from the log into PostgreSQL | {brand_records} | {projection_rate:.0} | {:.0}% |",
        100.0 * projection_rate / raw_consume_rate
    );
    println!("| raw consume, steady (after the first record, {raw_consume_first:.2?}) | {brand_records} | {raw_steady:.0} | ceiling |");
    println!(
        "| projection, steady (after the first batch, {projection_first:.2?}) | {brand_records} | {projection_steady:.0} | {:.0}% |",
        100.0 * projection_steady / raw_steady
    );
    println!();
    println!(
        "end-to-end lag at {} events/s for {:?} ({} commands of {} mentions): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        args.lag_rate,
        args.lag_duration,
        lags.len(),
        args.lag_rate.div_ceil(100),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0)
    );
    Ok(())
}

async fn wait_delivery(delivery: rdkafka::producer::DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => bail!("the producer went away"),
    }
}

async fn create_topics(config: &LogConfig, raw_topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.consumer(None).create()?;
    let mut names = config.topics();
    names.push(raw_topic.to_owned());
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((topic, code)) = result {
            bail!("creating {topic}: {code}");
        }
    }
    Ok(())
}

/// Sends a command of `rate / 100` mentions every 10 ms for `duration`; returns each command's
/// lag in milliseconds from its acceptance to the read model's position covering it.
async fn steady_lag(
    handler: &CommandHandler,
    brand: BrandId,
    read: &ReadStore,
    rate: usize,
    duration: Duration,
) -> Result<Vec<f64>> {
    let per_tick = rate.div_ceil(100);
    let ticks = (duration.as_millis() / 10) as usize;
    let accepted: Arc<tokio::sync::Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The observer: the read model's position, every 2 ms.
    let observer = {
        let read = read.clone();
        let accepted = accepted.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut next = 0usize;
            loop {
                let position = read
                    .positions()
                    .await?
                    .into_iter()
                    .find_map(|(name, position)| (name == "mentions").then_some(position))
                    .unwrap_or(0);
                let now = Instant::now();
                {
                    let accepted = accepted.lock().await;
                    while next < accepted.len() && accepted[next].0 <= position {
                        lags.push(now.duration_since(accepted[next].1).as_secs_f64() * 1000.0);
                        next += 1;
                    }
                    if done.load(std::sync::atomic::Ordering::Relaxed) && next == accepted.len() {
                        return Ok::<_, anyhow::Error>(lags);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mentions = generate_mentions(per_tick * ticks);
    for tick in 0..ticks {
        interval.tick().await;
        let batch: Vec<_> = mentions[tick * per_tick..(tick + 1) * per_tick]
            .iter()
            .cloned()
            .map(|mut m| {
                m.external_id = format!("lag-{}-{}", tick, m.external_id);
                m
            })
            .collect();
        let receipt = handler
            .ingest_mentions(&context()?, brand, batch, Utc::now(), &services())
            .await?;
        if let Some(position) = receipt.last_position {
            accepted.lock().await.push((position, Instant::now()));
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(120), observer)
        .await
        .context("the read model never caught up with the steady load")??
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
