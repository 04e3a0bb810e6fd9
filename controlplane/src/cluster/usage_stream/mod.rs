//! The usage stream, read by the control plane's consumer (`workers/usage_ingest/`): the
//! consumer group's commands (`XGROUP`, `XREADGROUP`, `XACK` + `XDEL`, `XAUTOCLAIM`,
//! `XINFO CONSUMERS`, `XPENDING`, `XLEN`) and their replies, parsed (`reply.rs`). Errors are
//! the text of a Redis failure: the consumer reconnects and retries.

mod reply;

use std::time::Duration;

use bb8_redis::redis::{self, aio::MultiplexedConnection, AsyncConnectionConfig, Value};

pub use self::reply::{ConsumerInfo, Entry};
pub use bb8_redis::redis::Client;

/// One consumer of one group of one stream.
#[derive(Debug, Clone)]
pub struct UsageStream {
    /// The stream (`cluster.usage_stream`).
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This process's consumer name.
    pub consumer: String,
}

/// The client of `redis_url` the consumer opens its own connection with (no I/O yet).
pub fn client(redis_url: &str) -> Result<redis::Client, String> {
    redis::Client::open(redis_url)
        .map_err(|e| format!("redis.url (ROUTER_REDIS_URL) is not a valid Redis URL: {e}"))
}

fn failed(error: redis::RedisError) -> String {
    error.to_string()
}

impl UsageStream {
    /// Opens the consumer's own connection (blocking reads must not hold a pooled one, and
    /// need a response timeout longer than the block) and creates the group when it does not
    /// exist. `true`: the group was created.
    pub async fn connect(
        &self,
        client: &redis::Client,
        response_timeout: Duration,
    ) -> Result<(MultiplexedConnection, bool), String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(failed)?;
        // From `0`, not `$`: entries written before the group existed are ingested too.
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(_) => Ok((conn, true)),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok((conn, false)),
            Err(e) => Err(failed(e)),
        }
    }

    /// `XREADGROUP`: up to `count` entries, this consumer's own pending ones (`own`, from
    /// `0`, never blocking) or new ones (`>`, blocking up to `block`).
    pub async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        own: bool,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, String> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if !own {
            read.arg("BLOCK").arg(block.as_millis() as u64);
        }
        read.arg("STREAMS")
            .arg(&self.stream)
            .arg(if own { "0" } else { ">" });
        let reply: Value = read.query_async(conn).await.map_err(failed)?;
        reply::parse_read_reply(reply)
    }

    /// Acknowledges and deletes `ids` (`XACK` + `XDEL` in one `MULTI`).
    pub async fn ack_and_delete(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[String],
    ) -> Result<(), String> {
        let _: Value = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(ids)
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(ids)
            .query_async(conn)
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// `XAUTOCLAIM`: one page of entries pending at least `min_idle` with any consumer,
    /// claimed for this one, from `cursor`. Returns the next cursor (`0-0`: done), the
    /// entries and how many pending entries had been deleted from the stream.
    pub async fn autoclaim(
        &self,
        conn: &mut MultiplexedConnection,
        min_idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Entry>, usize), String> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await
            .map_err(failed)?;
        reply::parse_autoclaim_reply(reply)
    }

    /// `XINFO CONSUMERS`: the group's consumers.
    pub async fn consumers(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Vec<ConsumerInfo>, String> {
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await
            .map_err(failed)?;
        reply::parse_consumers(reply)
    }

    /// `XGROUP DELCONSUMER`: removes `name`; returns how many entries it still had pending.
    pub async fn delete_consumer(
        &self,
        conn: &mut MultiplexedConnection,
        name: &str,
    ) -> Result<i64, String> {
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(name)
            .query_async(conn)
            .await
            .map_err(failed)
    }

    /// The backlog: entries pending in the group, and the stream's length.
    pub async fn backlog(&self, conn: &mut MultiplexedConnection) -> Result<(u64, u64), String> {
        let (summary, length): (Value, u64) = redis::pipe()
            .cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .cmd("XLEN")
            .arg(&self.stream)
            .query_async(conn)
            .await
            .map_err(failed)?;
        Ok((reply::parse_pending_count(&summary)?, length))
    }
}
