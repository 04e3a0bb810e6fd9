//! A small SMTP server for tests (RFC 5321 over plain TCP): `EHLO`/`HELO`, optional
//! `AUTH PLAIN` / `AUTH LOGIN`, `MAIL`, `RCPT`, `DATA` with dot-unstuffing, `RSET`, `NOOP`,
//! `QUIT`. Every accepted message is recorded. No TLS: clients use plain text
//! (`use_tls: false`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use omg_mock_upstream::smtp::{SmtpConfig, SmtpServer};
//! let server = SmtpServer::start(SmtpConfig::default()).await?;
//! let port = server.addr().port();
//! # let _ = port;
//! assert!(server.messages().is_empty());
//! # Ok(())
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest message accepted (`552` beyond it).
const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Longest command line.
const MAX_LINE: usize = 4096;

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct SmtpConfig {
    /// When set, `AUTH PLAIN` and `AUTH LOGIN` are offered and `MAIL` requires a successful
    /// login with exactly these credentials.
    pub credentials: Option<(String, String)>,
}

/// A message as the server accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpMessage {
    /// The `EHLO`/`HELO` argument.
    pub helo: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
    /// The `MAIL FROM` address (without angle brackets).
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The content after dot-unstuffing, lines joined with CRLF (headers, blank line, body).
    pub data: String,
}

impl SmtpMessage {
    /// The first header of that name (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
            } else if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_owned());
                }
            }
        }
        found
    }

    /// The body (after the first blank line).
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

struct Shared {
    config: SmtpConfig,
    messages: Mutex<Vec<SmtpMessage>>,
    connections: Mutex<usize>,
}

impl Shared {
    fn messages(&self) -> MutexGuard<'_, Vec<SmtpMessage>> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running SMTP server on 127.0.0.1; stops accepting when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl SmtpServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(config: SmtpConfig) -> std::io::Result<SmtpServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            messages: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop));
        Ok(SmtpServer {
            addr,
            shared,
            shutdown,
        })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.shared.messages().clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        *self
            .shared
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        *shared
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = session(stream, &shared).await;
        });
    }
}

/// The state of one SMTP session.
#[derive(Default)]
struct Session {
    helo: Option<String>,
    user: Option<String>,
    from: Option<String>,
    to: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }
}

/// The address inside `FROM:<a@b> …` / `TO:<a@b>`.
fn path_arg(rest: &str, keyword: &str) -> Option<String> {
    let rest = rest.trim_start();
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

fn decode_b64(text: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut state = Session::default();
    write.write_all(b"220 mock-smtp ESMTP ready\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            write.write_all(b"500 5.5.2 line too long\r\n").await?;
            continue;
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                state.helo = Some(rest.trim().to_owned());
                state.reset();
                let mut reply = String::from("250-mock-smtp greets you\r\n250-8BITMIME\r\n");
                reply.push_str(&format!("250-SIZE {MAX_MESSAGE}\r\n"));
                if shared.config.credentials.is_some() {
                    reply.push_str("250-AUTH PLAIN LOGIN\r\n");
                }
                reply.push_str("250 SMTPUTF8\r\n");
                reply
            }
            "HELO" => {
                state.helo = Some(rest.trim().to_owned());
                state.reset();
                "250 mock-smtp\r\n".to_owned()
            }
            "AUTH" => {
                let Some((user, pass)) = &shared.config.credentials else {
                    write.write_all(b"503 5.5.1 AUTH not offered\r\n").await?;
                    continue;
                };
                let (mechanism, initial) = rest.split_once(' ').unwrap_or((rest, ""));
                let given = match mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => {
                        let encoded = if initial.is_empty() {
                            write.write_all(b"334 \r\n").await?;
                            read_line(&mut reader).await?
                        } else {
                            initial.to_owned()
                        };
                        decode_b64(&encoded).and_then(|text| {
                            let mut parts = text.split('\0');
                            let _authzid = parts.next()?;
                            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                        })
                    }
                    "LOGIN" => {
                        let user_b64 = if initial.is_empty() {
                            // "Username:"
                            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                            read_line(&mut reader).await?
                        } else {
                            initial.to_owned()
                        };
                        // "Password:"
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let pass_b64 = read_line(&mut reader).await?;
                        decode_b64(&user_b64).zip(decode_b64(&pass_b64))
                    }
                    _ => {
                        write
                            .write_all(b"504 5.5.4 mechanism not supported\r\n")
                            .await?;
                        continue;
                    }
                };
                match given {
                    Some((u, p)) if &u == user && &p == pass => {
                        state.user = Some(u);
                        "235 2.7.0 authenticated\r\n".to_owned()
                    }
                    _ => "535 5.7.8 authentication failed\r\n".to_owned(),
                }
            }
            "MAIL" => {
                if state.helo.is_none() {
                    "503 5.5.1 EHLO first\r\n".to_owned()
                } else if shared.config.credentials.is_some() && state.user.is_none() {
                    "530 5.7.0 authentication required\r\n".to_owned()
                } else {
                    match path_arg(rest, "FROM:") {
                        Some(from) => {
                            state.reset();
                            state.from = Some(from);
                            "250 2.1.0 ok\r\n".to_owned()
                        }
                        None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
                    }
                }
            }
            "RCPT" => {
                if state.from.is_none() {
                    "503 5.5.1 MAIL first\r\n".to_owned()
                } else {
                    match path_arg(rest, "TO:") {
                        Some(to) => {
                            state.to.push(to);
                            "250 2.1.5 ok\r\n".to_owned()
                        }
                        None => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
                    }
                }
            }
            "DATA" => {
                if state.to.is_empty() {
                    "503 5.5.1 RCPT first\r\n".to_owned()
                } else {
                    write
                        .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut lines = Vec::new();
                    let mut size = 0usize;
                    loop {
                        let mut data_line = String::new();
                        if reader.read_line(&mut data_line).await? == 0 {
                            return Ok(());
                        }
                        let content = data_line.trim_end_matches(['\r', '\n']);
                        if content == "." {
                            break;
                        }
                        size += data_line.len();
                        // Dot-unstuffing (RFC 5321 §4.5.2).
                        let content = content.strip_prefix('.').unwrap_or(content);
                        lines.push(content.to_owned());
                    }
                    if size > MAX_MESSAGE {
                        state.reset();
                        "552 5.3.4 message too big\r\n".to_owned()
                    } else {
                        shared.messages().push(SmtpMessage {
                            helo: state.helo.clone().unwrap_or_default(),
                            user: state.user.clone(),
                            from: state.from.clone().unwrap_or_default(),
                            to: state.to.clone(),
                            data: lines.join("\r\n"),
                        });
                        state.reset();
                        "250 2.0.0 queued\r\n".to_owned()
                    }
                }
            }
            "RSET" => {
                state.reset();
                "250 2.0.0 ok\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 ok\r\n".to_owned(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented\r\n".to_owned(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn exchange(
        reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: &mut tokio::net::tcp::OwnedWriteHalf,
        send: &str,
    ) -> String {
        write.write_all(send.as_bytes()).await.unwrap();
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            reply.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return reply;
            }
        }
    }

    #[tokio::test]
    async fn speaks_enough_smtp_and_unstuffs_dots() {
        let server = SmtpServer::start(SmtpConfig {
            credentials: Some(("u".into(), "p".into())),
        })
        .await
        .unwrap();
        let stream = TcpStream::connect(server.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).await.unwrap();
        assert!(greeting.starts_with("220 "));
        let ehlo = exchange(&mut reader, &mut write, "EHLO client.test\r\n").await;
        assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
        let denied = exchange(&mut reader, &mut write, "MAIL FROM:<a@x>\r\n").await;
        assert!(denied.starts_with("530"), "{denied}");
        // AUTH PLAIN base64("\0u\0p")
        let auth = exchange(&mut reader, &mut write, "AUTH PLAIN AHUAcA==\r\n").await;
        assert!(auth.starts_with("235"), "{auth}");
        assert!(exchange(&mut reader, &mut write, "NOOP\r\n")
            .await
            .starts_with("250"));
        assert!(
            exchange(&mut reader, &mut write, "MAIL FROM:<a@x> SIZE=10\r\n")
                .await
                .starts_with("250")
        );
        assert!(exchange(&mut reader, &mut write, "RSET\r\n")
            .await
            .starts_with("250"));
        assert!(exchange(&mut reader, &mut write, "RCPT TO:<b@y>\r\n")
            .await
            .starts_with("503"));
        assert!(exchange(&mut reader, &mut write, "MAIL FROM:<a@x>\r\n")
            .await
            .starts_with("250"));
        assert!(exchange(&mut reader, &mut write, "RCPT TO:<b@y>\r\n")
            .await
            .starts_with("250"));
        assert!(exchange(&mut reader, &mut write, "DATA\r\n")
            .await
            .starts_with("354"));
        let done = exchange(
            &mut reader,
            &mut write,
            "Subject: hi\r\n\r\nline\r\n..dotted\r\n.\r\n",
        )
        .await;
        assert!(done.starts_with("250"), "{done}");
        assert!(exchange(&mut reader, &mut write, "QUIT\r\n")
            .await
            .starts_with("221"));
        let messages = server.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].user.as_deref(), Some("u"));
        assert_eq!(messages[0].to, vec!["b@y".to_owned()]);
        assert_eq!(messages[0].header("subject").as_deref(), Some("hi"));
        assert_eq!(messages[0].body(), "line\r\n.dotted");
    }
}
