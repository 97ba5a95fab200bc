//! One access-log line and the request metrics per request: client, method, path, status,
//! bytes and duration.
//!
//! The lines are gathered in memory and written to standard error once a second, as soon as
//! 64 KiB are waiting, and when the server stops (like nginx's `access_log … buffer= flush=`), so a
//! request costs no write of its own. Other log lines are written at once: an access line can
//! appear up to a second after a message the same request logged. The line has the shape of
//! every other log line (`[time LEVEL target] …`) and obeys `RUST_LOG` like them (target
//! `botilyx_media::access`; health probes log at `debug`).
//!
//! SECURITY: the path is printed escaped (`{:?}`), so a hostile name cannot forge log lines, and
//! no header is logged, so a bearer token never reaches the log.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use log::Level;

use crate::app::AppState;

const TARGET: &str = "botilyx_media::access";
/// Lines waiting past this size are written at once.
const FLUSH_BYTES: usize = 64 * 1024;
/// The longest a line waits.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let response = next.call(req).await?;
    let elapsed = started.elapsed();

    let request = response.request();
    let path = request.path();
    let method = request.method();
    let status = response.status().as_u16();
    let body_size = match response.response().body().size() {
        BodySize::Sized(n) => Some(n),
        _ => None,
    };
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        state.metrics.observe_request(
            first,
            method,
            status,
            body_size.unwrap_or(0),
            elapsed.as_secs_f64(),
        );
    }

    let level = if path == "/healthz" || path == "/readyz" {
        Level::Debug
    } else {
        Level::Info
    };
    if log::log_enabled!(target: TARGET, level) {
        Sink::lock().push(&Line {
            level,
            peer: request.peer_addr().map(|a| a.ip()),
            method: method.as_str(),
            path,
            status,
            body_size,
            micros: elapsed.as_micros(),
        });
    }
    Ok(response)
}

/// Writes every waiting access line now. The server calls it when it stops.
pub fn flush() {
    Sink::lock().flush();
}

/// What one access line says.
struct Line<'a> {
    level: Level,
    peer: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    status: u16,
    body_size: Option<u64>,
    micros: u128,
}

/// The waiting lines, shared by the workers.
struct Sink {
    waiting: Vec<u8>,
    /// The second `stamp` was made for, and the time as printed.
    second: u64,
    stamp: String,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    waiting: Vec::new(),
    second: u64::MAX,
    stamp: String::new(),
});
static FLUSHER: Once = Once::new();

impl Sink {
    fn lock() -> MutexGuard<'static, Sink> {
        FLUSHER.call_once(|| {
            let started = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(FLUSH_EVERY);
                        flush();
                    }
                });
            if let Err(e) = started {
                log::error!("access lines will be written only every {FLUSH_BYTES} bytes: {e}");
            }
        });
        // NOTE: a worker that panicked mid-line leaves at worst one half line; keep logging.
        SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one line, with the time, level and target as env_logger prints them.
    ///
    /// NOTE: numbers and plain paths are copied in directly: `format!` machinery was most of
    /// the line's cost, and the line is written for every request.
    fn push(&mut self, line: &Line) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.stamp.clear();
            if let Ok(time) = jiff::Timestamp::try_from(now) {
                let _ = write!(self.stamp, "{time:.0}");
            }
        }
        let out = &mut self.waiting;
        let mut number = itoa::Buffer::new();
        out.push(b'[');
        out.extend_from_slice(self.stamp.as_bytes());
        out.extend_from_slice(match line.level {
            Level::Error => b" ERROR ",
            Level::Warn => b" WARN  ",
            Level::Info => b" INFO  ",
            Level::Debug => b" DEBUG ",
            Level::Trace => b" TRACE ",
        });
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b"] ");
        match line.peer {
            Some(IpAddr::V4(ip)) => {
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(number.format(octet).as_bytes());
                }
            }
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push(b'-'),
        }
        out.push(b' ');
        out.extend_from_slice(line.method.as_bytes());
        out.push(b' ');
        // SECURITY: anything but plain printable ASCII is escaped, so a line stays one line.
        if line
            .path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            out.push(b'"');
            out.extend_from_slice(line.path.as_bytes());
            out.push(b'"');
        } else {
            let _ = write!(out, "{:?}", line.path);
        }
        out.push(b' ');
        out.extend_from_slice(number.format(line.status).as_bytes());
        out.push(b' ');
        match line.body_size {
            Some(n) => out.extend_from_slice(number.format(n).as_bytes()),
            None => out.push(b'-'),
        }
        out.push(b' ');
        out.extend_from_slice(number.format(line.micros / 1000).as_bytes());
        let fraction = line.micros % 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
        out.extend_from_slice(b"ms\n");
        if out.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        // NOTE: a log that cannot be written has nowhere to report it; drop the lines rather
        // than grow without bound.
        let _ = std::io::stderr().write_all(&self.waiting);
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(path: &str, peer: Option<IpAddr>, body_size: Option<u64>) -> String {
        let mut sink = Sink {
            waiting: Vec::new(),
            second: u64::MAX,
            stamp: String::new(),
        };
        sink.push(&Line {
            level: Level::Info,
            peer,
            method: "GET",
            path,
            status: 404,
            body_size,
            micros: 12_045,
        });
        let text = String::from_utf8(sink.waiting).unwrap();
        let (_, rest) = text.split_once("] ").unwrap();
        rest.to_owned()
    }

    #[test]
    fn a_line_has_the_fields_in_order_and_the_time_and_level_first() {
        let mut sink = Sink {
            waiting: Vec::new(),
            second: u64::MAX,
            stamp: String::new(),
        };
        sink.push(&Line {
            level: Level::Debug,
            peer: Some("10.1.2.3".parse().unwrap()),
            method: "HEAD",
            path: "/healthz",
            status: 200,
            body_size: Some(0),
            micros: 7,
        });
        let text = String::from_utf8(sink.waiting).unwrap();
        let (head, rest) = text.split_once("] ").unwrap();
        assert!(head.starts_with("[20") && head.ends_with("Z DEBUG botilyx_media::access"));
        assert_eq!(rest, "10.1.2.3 HEAD \"/healthz\" 200 0 0.007ms\n");
    }

    #[test]
    fn paths_that_could_break_a_line_are_escaped() {
        let v6 = Some("::1".parse().unwrap());
        assert_eq!(
            formatted("/a/b.jpg", v6, None),
            "::1 GET \"/a/b.jpg\" 404 - 12.045ms\n"
        );
        for (path, shown) in [
            ("/a\"b", r#""/a\"b""#),
            ("/a\\b", r#""/a\\b""#),
            ("/a\nb", r#""/a\nb""#),
            ("/a\rb", r#""/a\rb""#),
            ("/a b", r#""/a b""#),
            ("/é", r#""/é""#),
            ("/a\u{1b}[31m", r#""/a\u{1b}[31m""#),
        ] {
            let line = formatted(path, None, Some(5));
            assert_eq!(line, format!("- GET {shown} 404 5 12.045ms\n"), "{path:?}");
            assert_eq!(line.lines().count(), 1);
        }
    }
}
