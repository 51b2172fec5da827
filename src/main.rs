//! The shipped `flyteinfra` binary: the CLI over the real providers only.

use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    flyteinfra::main(Arc::new(flyteinfra::Providers))
}
