//! This application's `eventline`: every command (migrate, worker, up, status, replay, rebuild,
//! dlq, ...) for its own projections.

fn main() -> std::process::ExitCode {
    eventline::main_with(eventline::App::new().projection::<eventline_example_rust_projection::ReceivedTotals>())
}
