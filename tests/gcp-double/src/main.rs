//! `gcp-double [--port N]`: serves the GCP test double on 127.0.0.1 until killed.
//! Line 1 of stdout is its base URL, so a script can start it and read where it is.

use std::io::Write;

use flyteinfra_gcp_double::{Shared, serve};

fn usage() -> ! {
    let _ = writeln!(std::io::stderr(), "usage: gcp-double [--port N]");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = match a.as_str() {
            "--port" => args.next(),
            s => s.strip_prefix("--port=").map(str::to_string),
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(p) => port = p,
            None => usage(),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}")?;
    out.flush()?;
    drop(out);
    serve(listener, Shared::default()).await
}
