//! The shipped `eventline` binary: the command for the reference application.

fn main() -> std::process::ExitCode {
    eventline::main_with(eventline::App::reference())
}
