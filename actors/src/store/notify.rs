//! Wake-ups across replicas through PostgreSQL `LISTEN`/`NOTIFY`: a change committed on
//! any replica (`pg_notify(channel, '')` in its transaction) wakes the listeners of every
//! replica at once, so their loops sleep until the next due time instead of polling.
//!
//! One dedicated connection per channel and process, outside the pool (a pooled
//! connection cannot hold a `LISTEN`: the pool's driver task drops notifications).
//! Reconnects with back-off; while disconnected, the loops' fallback interval keeps them
//! correct, only later. Each (re)connection wakes the listeners once, in case something
//! changed meanwhile.

use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

/// Announces a change on `channel` to every replica's listener; sent when the caller's
/// transaction commits (at once outside one).
pub async fn send(
    db: &impl deadpool_postgres::GenericClient,
    channel: &str,
) -> Result<(), crate::error::StoreError> {
    let stmt = db.prepare_cached("SELECT pg_notify($1, '')").await?;
    db.execute(&stmt, &[&channel]).await?;
    Ok(())
}

/// Spawns the listener of `channel` on the current runtime; each notification (or
/// burst of them) calls `wake.notify_one()`. Runs until the process ends.
pub fn listen(dsn: &str, channel: &'static str, wake: Arc<Notify>) -> Result<(), String> {
    let (config, tls) = super::pg_tls::config(dsn)?;
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            let once = match &tls {
                super::pg_tls::Tls::Plain => {
                    listen_once(&config, tokio_postgres::NoTls, channel, &wake).await
                }
                super::pg_tls::Tls::Rustls(tls) => {
                    listen_once(&config, tls.clone(), channel, &wake).await
                }
            };
            match once {
                Ok(()) => delay = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(channel, error = %e, "LISTEN connection lost; reconnecting");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
    Ok(())
}

async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    wake: &Notify,
) -> Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection must be driven while the LISTEN command runs.
    let command = format!("LISTEN {channel}");
    {
        let listening = client.batch_execute(&command);
        tokio::pin!(listening);
        loop {
            tokio::select! {
                done = &mut listening => {
                    done?;
                    break;
                }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
            }
        }
    }
    wake.notify_one();
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            wake.notify_one();
        }
    }
    // `client` lives until here: dropping it would close the connection.
    drop(client);
    Ok(())
}
