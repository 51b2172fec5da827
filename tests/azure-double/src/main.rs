//! `azure-double [--port N]`: serves the Azure Resource Manager test double on 127.0.0.1
//! until killed. Line 1 of stdout is its base URL, so a script can start it and read
//! where it is. Async answers say `Retry-After: 1` and take two polls, like a slow cloud.
//!
//! `azure-double --azurite-sas` prints the account SAS query string for Azurite's
//! development account (no leading `?`; `azurite::account_sas`) on one line and exits, so
//! a script can build the blob endpoint `http://127.0.0.1:PORT/devstoreaccount1?<SAS>`.

use std::io::Write;

use flyteinfra_azure_double::{Shared, azurite, serve};

fn usage() -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "usage: azure-double [--port N]\n       azure-double --azurite-sas"
    );
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = match a.as_str() {
            "--azurite-sas" => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", azurite::account_sas())?;
                return out.flush();
            }
            "--port" => args.next(),
            s => s.strip_prefix("--port=").map(str::to_string),
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(p) => port = p,
            None => usage(),
        }
    }
    let shared = Shared::default();
    {
        let mut w = shared.lock();
        w.knobs.retry_after_secs = 1;
        w.knobs.polls_to_finish = 2;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}")?;
    out.flush()?;
    drop(out);
    serve(listener, shared).await
}
