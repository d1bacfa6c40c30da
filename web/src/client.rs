//! A small HTTP/1 client for wasmnet's API over its unix socket or TCP: what the CLI (and the
//! end-to-end tests) speak. One connection per request keeps it simple and stateless.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Where the server is: `unix:///run/wasmnet/wasmnet.sock` or `http://127.0.0.1:7878`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            return Ok(Target::Unix(path.into()));
        }
        if let Some(authority) = s.strip_prefix("http://") {
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(format!("{s:?}: expected http://HOST:PORT"));
            }
            return Ok(Target::Tcp(authority.to_string()));
        }
        if s.starts_with('/') {
            return Ok(Target::Unix(s.into()));
        }
        Err(format!("{s:?} is not unix:///PATH or http://HOST:PORT"))
    }
}

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach wasmnet at {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("talking to wasmnet: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with an error (its code and message).
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("the server's answer is not JSON: {0}")]
    Body(#[from] serde_json::Error),
}

#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
    token: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

impl Client {
    pub fn new(target: Target, token: Option<String>) -> Self {
        Client { target, token }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, ClientError> {
        let stream: std::io::Result<Box<dyn Io>> = match &self.target {
            Target::Unix(path) => UnixStream::connect(path)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
            Target::Tcp(addr) => TcpStream::connect(addr)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>),
        };
        stream.map_err(|source| ClientError::Connect {
            target: format!("{:?}", self.target),
            source,
        })
    }

    /// Sends one request with a JSON body (or none); returns the status and the raw body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let payload = match body {
            Some(v) => Some(("application/json", Bytes::from(serde_json::to_vec(v)?))),
            None => None,
        };
        self.send_bytes(method, path, payload).await
    }

    /// Sends one request with a body of the given content type.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let host = match &self.target {
            Target::Tcp(a) => a.as_str(),
            Target::Unix(_) => "localhost",
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host);
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).expect("a well-formed request");
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends one request and decodes the JSON answer; an error status becomes `ClientError::Api`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let answer = self.send(method, path, body).await?;
        decode(answer)
    }

    /// Uploads raw bytes (a policy module) and decodes the JSON answer.
    pub async fn upload(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let answer = self
            .send_bytes(Method::POST, path, Some((content_type, Bytes::from(bytes))))
            .await?;
        decode(answer)
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// Opens `GET /v1/events` and returns the stream of Server-Sent Events.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        self.stream("/v1/events").await
    }

    /// Opens a stream of Server-Sent Events (`/v1/events`, `/v1/flows/stream?…`).
    pub async fn stream(&self, path: &str) -> Result<EventStream, ClientError> {
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .uri(path)
            .header(header::HOST, "localhost");
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = sender
            .send_request(
                req.body(Full::new(Bytes::new()))
                    .expect("a well-formed request"),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: Value = serde_json::from_slice(&bytes)?;
            let text = |k: &str| value["error"][k].as_str().unwrap_or_default().to_string();
            return Err(ClientError::Api {
                status,
                code: text("code"),
                message: text("message"),
            });
        }
        Ok(EventStream {
            body: resp.into_body(),
            buffer: String::new(),
        })
    }

    /// Every item of a paged list, following `next` cursors.
    pub async fn list_all(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                Some(after) => format!("{path}{sep}limit=1000&after={}", encode(after)),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self.get(&url).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => next = Some(n.to_string()),
                None => return Ok(items),
            }
        }
    }
}

/// Server-Sent Events as (event name, data) pairs; keep-alive comments are skipped.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    /// The next event, or None when the server ends the stream.
    pub async fn next(&mut self) -> Option<Result<(String, String), ClientError>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some(Ok((name, data.join("\n"))));
                }
                continue;
            }
            let frame = match self.body.frame().await? {
                Ok(f) => f,
                Err(e) => return Some(Err(e.into())),
            };
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A JSON answer, or the API's error.
fn decode((status, bytes): (StatusCode, Bytes)) -> Result<Value, ClientError> {
    let value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    if status.is_success() {
        return Ok(value);
    }
    let text = |k: &str| value["error"][k].as_str().unwrap_or_default().to_string();
    Err(ClientError::Api {
        status,
        code: text("code"),
        message: text("message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            "unix:///run/x.sock".parse::<Target>().unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "/run/x.sock".parse::<Target>().unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "http://127.0.0.1:7878/".parse::<Target>().unwrap(),
            Target::Tcp("127.0.0.1:7878".into())
        );
        assert!("https://x".parse::<Target>().is_err());
        assert!("http://a/b".parse::<Target>().is_err());
    }
}
