//! One lazily opened, multiplexed Redis connection for running Lua scripts under a deadline:
//! shared by the limits (`limits/redis.rs`) and the idempotency store
//! (`idempotency/redis.rs`). A failed or late call drops the connection so the next one
//! reconnects; error messages never contain the URL's password.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// A script runner on one Redis URL.
pub struct ScriptConn {
    client: redis::Client,
    password: Option<String>,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    /// The config key of `timeout`, named in timeout errors.
    setting: &'static str,
}

impl ScriptConn {
    /// A runner on `url` whose calls get `timeout` (the config key `setting`); connects lazily.
    pub fn new(url: &str, timeout: Duration, setting: &'static str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|error| format!("redis.url is not a valid Redis URL: {error}"))?;
        let password = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned);
        Ok(Self {
            client,
            password,
            conn: tokio::sync::Mutex::new(None),
            timeout,
            setting,
        })
    }

    fn scrub(&self, error: &redis::RedisError) -> String {
        let message = error.to_string();
        match &self.password {
            Some(password) if !password.is_empty() => message.replace(password, "****"),
            _ => message,
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let connect_within = self.timeout.max(Duration::from_millis(500));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_within))
            .set_response_timeout(Some(self.timeout));
        let conn = tokio::time::timeout(
            connect_within,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| format!("no connection within {} ms", connect_within.as_millis()))?
        .map_err(|error| self.scrub(&error))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one invocation with the deadline; a failure drops the connection.
    pub async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut conn = self.connection().await?;
        let call = invocation.invoke_async::<T>(&mut conn);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.scrub(&error)),
            Err(_) => Err(format!(
                "no answer within {} ms ({})",
                self.timeout.as_millis(),
                self.setting
            )),
        };
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }
}
