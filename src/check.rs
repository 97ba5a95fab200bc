//! The operator's commands: `check` (is every collection folder really usable?) and
//! `healthcheck` (does the running server answer?, for a container HEALTHCHECK).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;
use crate::folder_check::{FolderReport, Verdict};
use crate::storage::Storage;

/// Inspects every collection folder without creating anything, prints the findings, and returns
/// whether all are OK.
pub fn check(config: &Config, json: bool) -> anyhow::Result<bool> {
    let storage = Storage::new(&config.data_dir, &config.collections);
    let reports: Vec<FolderReport> = storage
        .collections()
        .map(|c| FolderReport::inspect(c, false))
        .collect();
    let all_ok = reports.iter().all(|r| r.verdict == Verdict::Ok);

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": all_ok, "collections": reports })
            )?
        );
    } else {
        for report in &reports {
            println!("{}", row(report));
        }
    }
    Ok(all_ok)
}

fn row(r: &FolderReport) -> String {
    let verdict = serde_json::to_value(r.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mount = r.mount.as_ref().map_or("unknown".to_owned(), |m| {
        format!(
            "{} ({} from {})",
            m.mount_point.display(),
            m.fs_type,
            m.source
        )
    });
    let mut line = format!(
        "{verdict:<12} {} path={} exists={} owner={} mode={} process={} writable={} mount={} free={}",
        r.collection,
        r.path.display(),
        r.exists,
        r.owner.as_deref().unwrap_or("?"),
        r.mode.as_deref().unwrap_or("?"),
        r.process,
        r.writable,
        mount,
        r.free_bytes.map_or("?".to_owned(), |b| b.to_string()),
    );
    if let Some(error) = &r.error {
        line.push_str(&format!("\n             error: {error}"));
    }
    if let Some(fix) = &r.fix {
        line.push_str(&format!("\n             fix: {fix}"));
    }
    line
}

/// Asks `/healthz` on the local port of `--bind`; true on a 200 within three seconds.
pub fn healthcheck(config: &Config) -> bool {
    let ip = match config.bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let address = SocketAddr::new(ip, config.bind.port());
    let timeout = Duration::from_secs(3);

    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 32];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answer {
        Ok(status) if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") => {
            true
        }
        Ok(status) => {
            eprintln!(
                "healthcheck: {address} answered {:?}",
                status.lines().next().unwrap_or("")
            );
            false
        }
        Err(e) => {
            eprintln!("healthcheck: {address}: {e}");
            false
        }
    }
}
