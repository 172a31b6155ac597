//! The shipped `eventline` binary: the command for the reference application.

// A worker allocates and frees a few small buffers per event; glibc's allocator spent about a
// third of the worker's CPU on that (perf, cargo bench --bench runtime), mimalloc a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventline::main_with(eventline::App::reference())
}
