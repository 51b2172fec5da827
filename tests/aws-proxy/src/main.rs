//! `moto-proxy [--port N] http://127.0.0.1:<moto port>`: serves the proxy (a test double,
//! see the library) in front of moto on 127.0.0.1 until killed, with no fault rules.
//! Line 1 of stdout is its base URL, for `AWS_ENDPOINT_URL`. `scripts/moto.sh` starts it.

use std::io::Write;

use flyteinfra_aws_proxy::Proxy;

fn usage() -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "usage: moto-proxy [--port N] http://127.0.0.1:<moto port>"
    );
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let mut port: u16 = 0;
    let mut upstream = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = match a.as_str() {
            "--port" => args.next(),
            s if s.starts_with("--port=") => s.strip_prefix("--port=").map(str::to_string),
            s if s.starts_with("http://") && upstream.is_none() => {
                upstream = Some(s.to_string());
                continue;
            }
            _ => usage(),
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(p) => port = p,
            None => usage(),
        }
    }
    let Some(upstream) = upstream else { usage() };
    let proxy = Proxy::start_on(&upstream, port)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", proxy.url())?;
    out.flush()?;
    drop(out);
    // The proxy serves from its own thread until the process is killed.
    loop {
        std::thread::park();
    }
}
